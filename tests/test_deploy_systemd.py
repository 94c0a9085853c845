"""systemd units for the Pi: `systemd-analyze verify`, hardening, and sd_notify for real.

The units are verified in a throw-away root (`--root`) holding the distribution's unit
files and a stand-in for /opt/nattillsyn/venv/bin/nattillsyn, so nothing on this machine
is touched. The notify tests run the real services against a real socket.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nattillsyn.service import run_until_signalled
from nattillsyn.systemd import Notifier

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "deploy" / "systemd"
SERVICES = sorted(UNITS.glob("*.service"))
ANALYZE = shutil.which("systemd-analyze")
SYSTEM_UNITS = next(
    (p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()),
    None,
)
needs_analyze = pytest.mark.skipif(
    ANALYZE is None or SYSTEM_UNITS is None,
    reason="systemd-analyze or the distribution's unit files are absent (Debian package 'systemd')",
)


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file keeping repeated keys (systemd allows them)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        assert section is not None, f"{path.name}: key outside a section"
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def _sysroot(root: Path, program: str, units: list[Path]) -> Path:
    """A throw-away root: the distribution's units, a stand-in `program`, `units` installed."""
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    exe = root / program
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    dest = root / "etc/systemd/system"
    dest.mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, dest / unit.name)
    return root


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    root = _sysroot(
        tmp_path_factory.mktemp("sysroot"), "opt/nattillsyn/venv/bin/nattillsyn", SERVICES
    )
    (root / "etc/nattillsyn").mkdir(parents=True)
    return root


def test_there_are_units_for_edge_and_gateway():
    names = {p.name for p in SERVICES}
    assert {"nattillsyn-edge.service", "nattillsyn-gateway.service"} <= names


@needs_analyze
@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_unit_passes_systemd_analyze_verify(unit: Path, fake_root: Path):
    res = subprocess.run(
        [ANALYZE, "verify", f"--root={fake_root}", "--man=no", "--generators=no", unit.name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify reports unknown keys and bad values as warnings with exit 0: any line is a failure.
    ours = [ln for ln in (res.stdout + res.stderr).splitlines() if "nattillsyn" in ln]
    assert res.returncode == 0 and not ours, res.stdout + res.stderr


@needs_analyze
@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_unit_exposure_is_low(unit: Path, fake_root: Path):
    res = subprocess.run(
        [
            ANALYZE,
            "security",
            "--offline=true",
            f"--root={fake_root}",
            "--threshold=20",  # exit code only above 2.0 ("OK" is below 4)
            str(fake_root / "etc/systemd/system" / unit.name),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr


@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_unit_is_hardened(unit: Path):
    svc = _unit(unit)["Service"]

    def one(key: str) -> str:
        assert key in svc, f"{unit.name} lacks {key}="
        return svc[key][-1]

    assert one("User") not in ("", "root", "0")
    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    assert 5 <= int(one("WatchdogSec")) <= 120
    assert one("Restart") == "always"
    assert one("ProtectSystem") == "strict"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables"):
        assert one(key) == "true", key
    assert one("CapabilityBoundingSet") == ""
    assert "@system-service" in svc["SystemCallFilter"]
    # Secrets come as a credential, never in the unit or its environment.
    assert one("LoadCredential").startswith(unit.name.removeprefix("nattillsyn-").split(".")[0])
    env = " ".join(svc.get("Environment", []))
    assert "NATTILLSYN_CONFIG=%d/" in env
    assert "PASSWORD" not in env.upper() and "mqtt://" not in env


def test_sysusers_declares_the_dedicated_account():
    lines = (UNITS / "nattillsyn.sysusers").read_text().splitlines()
    entries = [ln.split() for ln in lines if ln and not ln.startswith("#")]
    assert entries[0][:2] == ["u", "nattillsyn"]
    assert any(e[:3] == ["m", "nattillsyn", "video"] for e in entries)


# -- sd_notify ---------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def _receive_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    """Datagrams until one holds the line `wanted` (poll with a deadline, no sleeps)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            continue
        seen.append(data)
        if wanted in data.splitlines():
            return seen
    raise AssertionError(f"no {wanted!r} within {timeout}s; got {seen}")


def test_notifier_is_a_no_op_outside_systemd():
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    assert n.ready() is False and n.watchdog() is False


def test_notifier_watchdog_belongs_to_the_main_pid_only(tmp_path: Path):
    env = {"NOTIFY_SOCKET": str(tmp_path / "s"), "WATCHDOG_USEC": "10000000"}
    assert Notifier(env).watchdog_interval == 5.0
    assert Notifier(env | {"WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 5.0
    assert Notifier(env | {"WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier(env | {"WATCHDOG_USEC": "x"}).watchdog_interval is None


def test_notifier_is_silent_in_a_child_process(tmp_path: Path):
    """Ingest's worker processes inherit NOTIFY_SOCKET; only the unit's main process speaks."""
    env = {"NOTIFY_SOCKET": str(tmp_path / "s")}
    assert Notifier(env | {"SYSTEMD_EXEC_PID": str(os.getpid())}).enabled
    assert not Notifier(env | {"SYSTEMD_EXEC_PID": "1"}).enabled
    assert not Notifier(env | {"WATCHDOG_PID": "1", "WATCHDOG_USEC": "1000000"}).enabled


def test_notifier_reaches_an_abstract_socket():
    name = f"nattillsyn-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert sock.recv(100) == b"STATUS=hello"


class _Idle:
    name = "idle"

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


async def test_run_until_signalled_notifies_ready_watchdog_and_stopping(notify_socket, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_signalled([_Idle()], stop=stop))
    seen = await asyncio.to_thread(_receive_until, sock, "READY=1", 10)
    assert any("STATUS=running idle" in d for d in seen)
    pings = 0
    while pings < 3:  # the loop keeps feeding the watchdog after READY
        data = await asyncio.to_thread(_receive_until, sock, "WATCHDOG=1", 10)
        pings += sum(d == "WATCHDOG=1" for d in data)
    stop.set()
    await asyncio.wait_for(task, 10)
    await asyncio.to_thread(_receive_until, sock, "STOPPING=1", 10)


def test_real_service_process_notifies_systemd(notify_socket, settings, test_id):
    """`nattillsyn ingest` as systemd would start it: READY, watchdog pings, clean stop."""
    path, sock = notify_socket
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATTILLSYN_", "WATCHDOG_"))}
    env |= {
        "NOTIFY_SOCKET": str(path),
        "WATCHDOG_USEC": "200000",
        "NATTILLSYN_DATABASE_URL": settings.database_url,
        "NATTILLSYN_DATABASE_SCHEMA": settings.database_schema,
        "NATTILLSYN_MQTT_URL": settings.mqtt_url,
        "NATTILLSYN_TOPIC_ROOT": settings.topic_root,
        "NATTILLSYN_INGEST__CLIENT_ID": f"ingest-sd-{test_id}",
        "NATTILLSYN_LOG__JSON": "true",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "nattillsyn.app.cli", "ingest"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _receive_until(sock, "READY=1", 60)
        _receive_until(sock, "WATCHDOG=1", 10)
        proc.send_signal(signal.SIGTERM)
        _receive_until(sock, "STOPPING=1", 10)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out.decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@needs_analyze
def test_backup_timer_and_service_verify(tmp_path: Path):
    backup = [
        ROOT / "deploy/backup" / n for n in ("nattillsyn-backup.service", "nattillsyn-backup.timer")
    ]
    root = _sysroot(tmp_path / "root", "usr/bin/docker", backup)
    (root / "opt/nattillsyn/deploy/compose").mkdir(parents=True)
    dest = root / "etc/systemd/system"
    if not (root / "usr/lib/systemd/system/docker.service").exists():
        (dest / "docker.service").write_text("[Service]\nExecStart=/usr/bin/docker\n")
    res = subprocess.run(
        [
            ANALYZE,
            "verify",
            f"--root={root}",
            "--man=no",
            "nattillsyn-backup.timer",
            "nattillsyn-backup.service",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [ln for ln in (res.stdout + res.stderr).splitlines() if "nattillsyn" in ln]
    assert res.returncode == 0 and not ours, res.stdout + res.stderr
