"""Private servers for the demo and the tests when no URL is configured.

- PostgreSQL from the server binaries of the distribution (Debian's `postgresql`
  package; found on PATH or under /usr/lib/postgresql/*/bin). These are
  maintained with security updates, unlike the pip-installable server wheels.
- Mosquitto from PATH (tests), or amqtt in-process (demo: nothing to install).

Each runs in a temporary folder, on a free loopback port, and is stopped with
its process group so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from nattillsyn import log

logger = log.get(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout):
        return True
    return False


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port, 0.2):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout}s")


def find_pg_bin() -> Path | None:
    """Folder holding initdb and postgres, or None."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "postgres").exists():
            return c
    return None


def timescale_installed(pg_bin: Path) -> bool:
    """Whether the TimescaleDB extension is installed for the server in `pg_bin`."""
    pg_config = pg_bin / "pg_config"
    exe = str(pg_config) if pg_config.exists() else shutil.which("pg_config")
    if exe is None:
        return False
    try:
        share = subprocess.run([exe, "--sharedir"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return (Path(share.stdout.strip()) / "extension" / "timescaledb.control").exists()


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (trust auth, loopback only).

    TimescaleDB is preloaded when it is installed, so migrations take the
    production path; otherwise the plain-PostgreSQL fallback.
    """

    def __init__(self, base_dir: Path | None = None, timescale: bool = True) -> None:
        self.bin = find_pg_bin()
        if self.bin is None:
            raise RuntimeError(
                "no PostgreSQL server binaries found: install Debian's 'postgresql' package "
                "or set NATTILLSYN_DATABASE_URL"
            )
        self._tmp = Path(tempfile.mkdtemp(prefix="nattillsyn-pg-", dir=base_dir))
        self.data = self._tmp / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._user = self._run_as()
        self.timescale = timescale and timescale_installed(self.bin)

    @staticmethod
    def _run_as() -> str | None:
        """PostgreSQL refuses to run as root: use the `postgres` (or `nobody`) account then."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        raise RuntimeError(
            "running as root and no 'postgres' or 'nobody' account to run PostgreSQL as"
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _popen_kwargs(self) -> dict:
        kw: dict = {"start_new_session": True}
        if self._user:
            kw["user"] = self._user
        return kw

    def start(self, timeout: float = 30.0) -> str:
        if self._user:
            pw = pwd.getpwnam(self._user)
            os.chown(self._tmp, pw.pw_uid, pw.pw_gid)
            os.chmod(self._tmp, 0o700)
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **self._popen_kwargs(),
        )
        logfile = open(self._tmp / "postgres.log", "wb")  # noqa: SIM115 - kept open for the server's life
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self._tmp),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            **self._popen_kwargs(),
        )
        logfile.close()
        wait_port("127.0.0.1", self.port, timeout, self.proc)
        self._wait_ready(timeout)
        logger.info("private postgres started", port=self.port, timescale=self.timescale)
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGINT: PostgreSQL's fast shutdown.
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        shutil.rmtree(self._tmp, ignore_errors=True)


class PrivateMosquitto:
    """A throw-away Mosquitto broker on a free loopback port."""

    def __init__(self, config_template: Path | None = None, extra_conf: str = "") -> None:
        """`extra_conf`: more mosquitto.conf lines (e.g. password_file, acl_file,
        allow_anonymous false); `{dir}` in it is replaced by the broker's own folder."""
        exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if exe is None:
            raise RuntimeError(
                "no mosquitto binary found: install Debian's 'mosquitto' or set NATTILLSYN_MQTT_URL"
            )
        self.exe = exe
        self._tmp = Path(tempfile.mkdtemp(prefix="nattillsyn-mqtt-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.extra_conf = extra_conf

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def dir(self) -> Path:
        """The broker's private folder (config, and files that extra_conf names)."""
        return self._tmp

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password and ACL files."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGHUP)

    def start(self, timeout: float = 10.0) -> str:
        conf = self._tmp / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\nmax_inflight_messages 100\n"
        )
        if os.geteuid() == 0:
            conf.write_text(conf.read_text() + "user root\n")
        if self.extra_conf:
            extra = self.extra_conf.replace("{dir}", str(self._tmp))
            conf.write_text(conf.read_text() + extra.rstrip("\n") + "\n")
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port("127.0.0.1", self.port, timeout, self.proc)
        return self.url

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self._tmp, ignore_errors=True)


class InProcessBroker:
    """amqtt's MQTT 3.1.1 broker inside the demo's event loop."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._broker = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}?protocol=3.1.1"

    async def start(self) -> str:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = Broker(config)
        await self._broker.start()
        return self.url

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
