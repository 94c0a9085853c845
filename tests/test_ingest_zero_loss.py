"""Zero loss: every event stored exactly once through a worker killed mid-batch, a broker
restart and a PostgreSQL crash-restart, with real Mosquitto (the project's configuration)
and real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from backends import timescale_missing
from ingest_helpers import motion_event

from nattillsyn.app.embedded import PrivateMosquitto, PrivatePostgres
from nattillsyn.db.migrate import migrate
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import TopicKind, Topics, encode
from nattillsyn.testing.processes import service_process

N = 8000
RATE = 800  # events/s: the disruptions all happen while events are in flight
WORKERS = 2


def _children(pid: int) -> dict[int, int]:
    """worker number -> pid of the supervisor's `ingest --worker N` children."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != pid:
                continue
            cmd = (stat.parent / "cmdline").read_bytes().split(b"\0")
            if b"--worker" in cmd:
                out[int(cmd[cmd.index(b"--worker") + 1])] = int(stat.parent.name)
    return out


def _start_ingest(env: dict[str, str]) -> subprocess.Popen:
    """`nattillsyn ingest`: the supervisor and its worker processes."""
    return service_process("ingest", env, start_new_session=True)


def _count(url: str, schema: str) -> tuple[int, int]:
    with psycopg.connect(url, connect_timeout=2) as conn:
        return conn.execute(
            f"SELECT count(*), count(DISTINCT id) FROM {schema}.events WHERE device = 'd1'"
        ).fetchone()


async def _until(fn, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(psycopg.OperationalError):
            value = await asyncio.to_thread(fn)
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", ["plain", "timescaledb"])
async def test_each_event_exactly_once_through_kill_and_restarts(backend: str) -> None:
    pg = PrivatePostgres(timescale=backend == "timescaledb")
    if backend == "timescaledb" and not pg.timescale:
        pg.stop()
        timescale_missing(f"TimescaleDB is not installed for the server binaries in {pg.bin}")
    broker = PrivateMosquitto()  # deploy/mosquitto/mosquitto.conf: persistence, limits
    sup: subprocess.Popen | None = None
    pub: MqttClient | None = None
    try:
        mqtt_url = broker.start()
        db_url = pg.start()
        schema = "zeroloss"
        await migrate(db_url, schema)
        root = f"zl{uuid.uuid4().hex[:8]}"
        env = os.environ | {
            "NATTILLSYN_DATABASE_URL": db_url,
            "NATTILLSYN_DATABASE_SCHEMA": schema,
            "NATTILLSYN_MQTT_URL": mqtt_url,
            "NATTILLSYN_TOPIC_ROOT": root,
            "NATTILLSYN_INGEST__WORKERS": str(WORKERS),
            "NATTILLSYN_INGEST__MAINTENANCE_S": "0",
            "NATTILLSYN_LOG__LEVEL": "WARNING",
        }
        sup = _start_ingest(env)

        def workers_connected() -> bool:
            with psycopg.connect(db_url) as conn:
                n = conn.execute(
                    "SELECT count(DISTINCT application_name) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'nattillsyn-ingest-w%'"
                ).fetchone()[0]
            return n == WORKERS

        await _until(workers_connected, "both workers")
        topics = Topics(root)
        # Like a device: keeps its session and sends again what no subscriber took (the
        # broker forgets shared subscriptions over its restart until the workers are back).
        pub = MqttClient(
            mqtt_url,
            f"zl-pub-{root}",
            clean_start=False,
            session_expiry_s=3600,
            retry_unrouted=True,
        )
        await pub.start()
        t = topics.device("site-1", "r1", "d1", TopicKind.event)
        now = datetime.now(UTC)
        # A message to a topic nobody subscribes yet is dropped by any broker: a probe
        # proves the shared subscription exists (it then lives in the workers' sessions).
        probe = topics.device("site-1", "r0", "probe", TopicKind.event)

        async def probe_stored() -> None:
            for i in range(600):
                e = motion_event(i, room="r0", device="probe", session=0, start=now)
                await pub.publish(probe, encode(e))
                with psycopg.connect(db_url) as conn:
                    if conn.execute(f"SELECT count(*) FROM {schema}.events").fetchone()[0]:
                        return
                await asyncio.sleep(0.1)
            raise AssertionError("ingest never stored a probe")

        await probe_stored()
        events = [motion_event(i, start=now) for i in range(N)]

        async def publish_all() -> None:
            t0 = time.monotonic()
            for i, e in enumerate(events):
                pub.publish_nowait(t, encode(e))
                if i % 40 == 39:
                    await pub.wait_outstanding_below(900)
                    # Paces the load (RATE), so the faults below meet events in flight.
                    ahead = t0 + (i + 1) / RATE - time.monotonic()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            await pub.wait_outstanding_below(1, timeout=120)

        publishing = asyncio.create_task(publish_all())

        def stored_at_least(n: int):
            return lambda: _count(db_url, schema)[1] >= n

        # 1. SIGKILL a worker in the middle of a batch: hold its INSERT on a lock, kill it
        #    while it waits inside the batch transaction (after its COPY).
        await _until(stored_at_least(1000), "1000 stored")
        lock = await psycopg.AsyncConnection.connect(db_url)
        await lock.execute(f"LOCK TABLE {schema}.events IN EXCLUSIVE MODE")

        def blocked_worker() -> str | None:
            with psycopg.connect(db_url) as conn:
                row = conn.execute(
                    "SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND application_name LIKE 'nattillsyn-ingest-w%' AND state = 'active' LIMIT 1"
                ).fetchone()
            return row[0] if row else None

        name = await _until(blocked_worker, "a worker blocked mid-batch")
        worker = int(name.rsplit("w", 1)[1])
        victim = _children(sup.pid)[worker]
        os.kill(victim, signal.SIGKILL)
        await lock.rollback()
        await lock.close()
        at_kill = _count(db_url, schema)[1]
        assert at_kill < N

        def replaced() -> bool:
            pid = _children(sup.pid).get(worker)
            return pid is not None and pid != victim

        await _until(replaced, "the supervisor to restart the worker")

        # 2. Restart the broker (graceful: Mosquitto saves sessions and queued messages).
        await _until(stored_at_least(at_kill + 1500), "progress after the kill")
        await asyncio.to_thread(broker.restart)
        at_broker = _count(db_url, schema)[1]
        assert at_broker < N

        # 3. Crash-restart PostgreSQL (immediate shutdown, recovery on start).
        await _until(stored_at_least(at_broker + 1500), "progress after the broker restart")
        await asyncio.to_thread(pg.restart, mode="immediate")
        at_pg = _count(db_url, schema)[1]
        assert at_pg < N

        await asyncio.wait_for(publishing, 180)
        try:
            await _until(stored_at_least(N), f"all {N} events stored", timeout=60)
        except AssertionError:
            with psycopg.connect(db_url) as conn:
                seqs = sorted(
                    r[0]
                    for r in conn.execute(f"SELECT seq FROM {schema}.events WHERE device = 'd1'")
                )
            missing = sorted(set(range(N)) - set(seqs))
            raise AssertionError(
                f"stored {len(seqs)} of {N}; kill at {at_kill}, broker restart at {at_broker}, "
                f"PostgreSQL restart at {at_pg}; missing seq {missing[:5]}..{missing[-5:]} "
                f"({len(missing)}); broker log: {broker.log()[-3000:]}"
            ) from None
        total, distinct = _count(db_url, schema)
        assert (total, distinct) == (N, N)
        with psycopg.connect(db_url) as conn:
            ids = {
                r[0] for r in conn.execute(f"SELECT id FROM {schema}.events WHERE device = 'd1'")
            }
            dead = conn.execute(f"SELECT count(*) FROM {schema}.dead_letters").fetchone()[0]
        assert ids == {e.id for e in events}
        assert dead == 0
    finally:
        if pub is not None:
            with contextlib.suppress(Exception):
                await pub.stop()
        if sup is not None and sup.poll() is None:
            os.killpg(sup.pid, signal.SIGTERM)
            try:
                sup.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(sup.pid, signal.SIGKILL)
                sup.wait(5)
        broker.stop()
        pg.stop()
