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

import psycopg
from amqtt.broker import Broker

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


def stop_group(proc: subprocess.Popen | None, sig: int, grace_s: float) -> None:
    """Signal a server's process group; SIGKILL it if it has not exited after `grace_s`."""
    if proc and proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (trust auth, loopback only).

    TimescaleDB is preloaded when it is installed (and `timescale` is true), so
    migrations take the production path; otherwise the plain-PostgreSQL fallback.
    Durability settings are off (throw-away data); `settings` adds or overrides
    server settings.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        timescale: bool = True,
        settings: dict[str, str] | None = None,
    ) -> None:
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
        self.extra_settings = dict(settings or {})

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
        self._launch(timeout)
        logger.info("private postgres started", port=self.port, timescale=self.timescale)
        return self.url

    def _server_args(self) -> list[str]:
        settings = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        if self.timescale:
            settings |= {
                "shared_preload_libraries": "timescaledb",
                "timescaledb.telemetry_level": "off",
                "max_worker_processes": "24",
                "timescaledb.max_background_workers": "16",
            }
        settings |= self.extra_settings
        args = []
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def _launch(self, timeout: float) -> None:
        logfile = open(self._tmp / "postgres.log", "ab")  # noqa: SIM115 - kept open for the server's life
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
                *self._server_args(),
            ],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            **self._popen_kwargs(),
        )
        logfile.close()
        try:
            wait_port("127.0.0.1", self.port, timeout, self.proc)
            self._wait_ready(timeout)
        except Exception:
            # The data directory (and its log) goes with stop(): say what the server said.
            logger.error("private postgres did not start", log=self.log()[-4000:])
            raise

    def restart(self, timeout: float = 30.0, *, mode: str = "fast") -> None:
        """Stop the server (`fast`: SIGINT, `immediate`: SIGQUIT, like a crash) and start
        it again on the same port and data."""
        self._shutdown(signal.SIGQUIT if mode == "immediate" else signal.SIGINT)
        self._launch(timeout)
        logger.info("private postgres restarted", port=self.port, mode=mode)

    def log(self) -> str:
        path = self._tmp / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _wait_ready(self, timeout: float) -> None:

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _shutdown(self, sig: int) -> None:
        stop_group(self.proc, sig, 20)

    def stop(self) -> None:
        self._shutdown(signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(self._tmp, ignore_errors=True)


PROJECT_MOSQUITTO_CONF = (
    Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"
)

# What PrivateMosquitto replaces in the template: where it listens, where it keeps
# files, who may connect. Everything else (queue and in-flight limits, persistence,
# session expiry) is the project's configuration as shipped.
_REWRITTEN = (
    "listener",
    "port",
    "bind_address",
    "socket_domain",
    "password_file",
    "acl_file",
    "allow_anonymous",
    "persistence_location",
    "persistence_file",
    "log_dest",
    "pid_file",
    "user",
    "certfile",
    "keyfile",
    "cafile",
    "capath",
    "require_certificate",
    "use_identity_as_username",
)


def mosquitto_config(template: str, *, port: int, data_dir: Path, extra: str = "") -> str:
    """The template with listener, paths and authentication rewritten for a private broker;
    `extra` lines (a test's own password or ACL file) come last and decide authentication."""
    kept = []
    for line in template.splitlines():
        word = line.strip().split(maxsplit=1)[0] if line.strip() else ""
        if word in _REWRITTEN:
            kept.append(f"# (private broker) {line}")
        else:
            kept.append(line)
    own_auth = any(
        line.strip().split(maxsplit=1)[:1] == ["allow_anonymous"] for line in extra.splitlines()
    )
    kept += [
        "",
        "# -- rewritten by nattillsyn.app.embedded.PrivateMosquitto --",
        *([] if own_auth else ["allow_anonymous true"]),
        f"persistence_location {data_dir}/",
        f"log_dest file {data_dir}/mosquitto.log",
        f"listener {port} 127.0.0.1",
    ]
    if os.geteuid() == 0:
        kept.append("user root")
    if extra:
        kept += ["", "# -- extra_conf --", extra.rstrip("\n")]
    return "\n".join(kept) + "\n"


class PrivateMosquitto:
    """A throw-away Mosquitto broker on a free loopback port, configured from the
    project's `deploy/mosquitto/mosquitto.conf` (only listener, paths and
    authentication are rewritten), so tests and benchmarks meet production limits.

    `restart()` stops it gracefully (it saves its persistent sessions and queued
    messages) and starts it again on the same port and data.
    """

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
        self.template = config_template or PROJECT_MOSQUITTO_CONF
        self._tmp = Path(tempfile.mkdtemp(prefix="nattillsyn-mqtt-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.extra_conf = extra_conf

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self._tmp / "mosquitto.conf"

    @property
    def dir(self) -> Path:
        """The broker's private folder (config, and files that extra_conf names)."""
        return self._tmp

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password and ACL files."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGHUP)

    def _write_config(self) -> None:
        # The project's broker configuration as shipped (tests and benchmarks run from a checkout).
        template = self.template.read_text()
        extra = self.extra_conf.replace("{dir}", str(self._tmp))
        self.config_path.write_text(
            mosquitto_config(template, port=self.port, data_dir=self._tmp, extra=extra)
        )

    def start(self, timeout: float = 10.0) -> str:
        self._write_config()
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port("127.0.0.1", self.port, timeout, self.proc)
        return self.url

    def _terminate(self, sig: int = signal.SIGTERM) -> None:
        stop_group(self.proc, sig, 30)

    def restart(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM: Mosquitto writes its persistence file) and start again."""
        self._terminate(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while port_open("127.0.0.1", self.port, 0.1) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start(timeout)

    def log(self) -> str:
        path = self._tmp / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self._terminate(signal.SIGTERM)
        shutil.rmtree(self._tmp, ignore_errors=True)


class _SnapshotDict(dict):
    """A dict whose iteration works on a copy, safe to change while iterated."""

    def __iter__(self):
        return iter(list(super().keys()))

    def items(self):
        return list(super().items())


class InProcessBroker:
    """amqtt's MQTT 3.1.1 broker inside the demo's event loop."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._broker = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}?protocol=3.1.1"

    async def start(self) -> str:

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = Broker(config)
        # amqtt 0.12 iterates its subscription table across awaits while other clients
        # subscribe ("dictionary changed size during iteration", a dropped connection):
        # iterating a snapshot is what it means to do.
        table = self._broker._subscriptions  # noqa: SLF001 (the amqtt bug above)
        self._broker._subscriptions = _SnapshotDict(table)  # noqa: SLF001
        await self._broker.start()
        return self.url

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
