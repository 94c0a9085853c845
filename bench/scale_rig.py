"""bench.scale's installation under test: a private Mosquitto with the deploy config, the
services as processes, the database's figures; CPU and memory of processes from /proc."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import psycopg

from bench.scale_rooms import ROOMS_PER_SITE
from nattillsyn.app.embedded import free_port, wait_port
from nattillsyn.testing.processes import service_process

REPO = Path(__file__).resolve().parents[1]
BROKER_CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = [pid]
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
    return out


def postmaster_pid(url: str) -> int:
    """The server process of a database given by URL (on this machine): its backend's parent."""
    with psycopg.connect(url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_broker(tmp: Path) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    lines = []
    for line in BROKER_CONF.read_text().splitlines():
        key = line.split("#", 1)[0].strip().split(" ", 1)[0]
        if key in ("listener", "password_file", "acl_file", "persistence_location", "user"):
            continue
        if key == "allow_anonymous":
            line = "allow_anonymous true"
        lines.append(line)
    lines += [f"listener {port} 127.0.0.1", f"persistence_location {tmp}/"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = tmp / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [exe, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_port("127.0.0.1", port, 10, proc)
    return proc, port


def stored(conn: psycopg.Connection, since: datetime) -> int:
    """Messages with a source time from `since` on that are committed (BRIN/hypertable on ts)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM events WHERE ts >= %(s)s)"
        " + (SELECT count(*) FROM room_states WHERE ts >= %(s)s)"
        " + (SELECT count(*) FROM heartbeats WHERE ts >= %(s)s)",
        {"s": since},
    ).fetchone()
    return int(row[0])


def latency(conn: psycopg.Connection, since: datetime) -> tuple[float | None, float | None]:
    row = conn.execute(
        """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d),
                  percentile_cont(0.95) WITHIN GROUP (ORDER BY d)
           FROM (SELECT extract(epoch FROM received_at - ts) AS d FROM heartbeats
                 WHERE received_at >= %s) x""",
        (since,),
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def seed(url: str, rooms: int) -> None:
    sites = (rooms + ROOMS_PER_SITE - 1) // ROOMS_PER_SITE
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (id, name) SELECT 'site-' || s, 'Boende ' || s "
            "FROM generate_series(0, %s) s ON CONFLICT DO NOTHING",
            (sites - 1,),
        )
        conn.execute(
            "INSERT INTO rooms (site_id, id, name) SELECT 'site-' || (i / %s), 'rum-' || i, "
            "'Rum ' || i FROM generate_series(0, %s) i ON CONFLICT DO NOTHING",
            (ROOMS_PER_SITE, rooms - 1),
        )
        # Residents with monitoring active round the clock (the benchmark runs at any hour)
        # in the first care home, where falls are injected.
        conn.execute(
            "INSERT INTO residents (site_id, room_id, display_name, monitoring_active, "
            "monitor_from, monitor_to) "
            "SELECT 'site-0', 'rum-' || i, 'Boende ' || i, true, '00:00', '00:00' "
            "FROM generate_series(0, %s) i",
            (ROOMS_PER_SITE - 1,),
        )


class Services:
    def __init__(self, db_url: str, mqtt_url: str, root: str, tmp: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NATTILLSYN_")}
        self.env |= {
            "NATTILLSYN_DATABASE_URL": db_url,
            "NATTILLSYN_MQTT_URL": mqtt_url,
            "NATTILLSYN_TOPIC_ROOT": root,
            "NATTILLSYN_LOG__JSON": "true",
            "NATTILLSYN_LOG__LEVEL": "WARNING",
        }
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, tag: str | None = None, **env: str) -> None:
        tag = tag or name
        log = open(self.tmp / f"{tag}.log", "wb")  # noqa: SIM115 - the child's for its life
        self.procs[tag] = service_process(
            name, self.env | env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
