"""Ingest: MQTT → PostgreSQL/TimescaleDB, acknowledged only after the commit.

Each worker holds a persistent MQTT session (queued messages wait for it while it is
down) with manual acknowledgement: a batch is acknowledged to the broker only after
its transaction committed, so a crash mid-batch means redelivery, never loss, and
idempotent writes make redelivery harmless. The broker delivers at most
`receive_maximum` unacknowledged messages to a worker: in-flight is bounded.
With MQTT 5, `workers` processes split the load through a shared subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter as Tally
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
from prometheus_client import Counter, Gauge, Histogram
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import PoolTimeout

from nattillsyn import log, metrics
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.db.pool import make_pool
from nattillsyn.ingest.storage import Maintainer, set_policy
from nattillsyn.mqtt import MqttClient, MqttUrl, Received
from nattillsyn.protocol import DeviceMessage, TopicKind, Topics
from nattillsyn.protocol.validate import DeadLetter, Record, decode_message
from nattillsyn.settings import Settings

from .writer import BatchResult, DeviceSeen, write_batch, write_devices

logger = log.get(__name__)

MESSAGES = Counter("nattillsyn_ingest_messages_total", "MQTT messages received", ["kind"])
ROWS = Counter("nattillsyn_ingest_rows_total", "Rows inserted", ["table"])
DUPLICATES = Counter(
    "nattillsyn_ingest_duplicates_total", "Messages already stored (redeliveries, replays)"
)
REDELIVERED = Counter(
    "nattillsyn_ingest_redelivered_total", "Messages the broker marked as redelivered (DUP)"
)
DEAD = Counter(
    "nattillsyn_ingest_dead_letters_total", "Messages sent to the dead-letter table", ["reason"]
)
DB_ERRORS = Counter(
    "nattillsyn_ingest_db_errors_total",
    "Failed batch writes: retried (database unavailable) or isolated (row refused)",
    ["action"],
)
BATCH_SECONDS = Histogram(
    "nattillsyn_ingest_batch_seconds",
    "Time to write and commit one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "nattillsyn_ingest_batch_messages",
    "Messages per batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
LATENCY = Histogram(
    "nattillsyn_ingest_latency_seconds",
    "Source timestamp to commit, per stored message",
    buckets=(
        0.005,
        0.01,
        0.02,
        0.03,
        0.04,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.5,
        0.75,
        1,
        2,
        5,
        10,
        30,
        60,
        300,
    ),
)
LAG = Gauge("nattillsyn_ingest_lag_seconds", "Commit time minus source time of the newest message")
BACKLOG = Gauge("nattillsyn_ingest_backlog", "Messages received and not yet written")
DEVICE_ROWS = Counter(
    "nattillsyn_ingest_device_rows_total", "Device summaries merged into the devices table"
)

STORED_KINDS = (
    TopicKind.event,
    TopicKind.state,
    TopicKind.heartbeat,
    TopicKind.availability,
    TopicKind.config_state,
)
SHARE_GROUP = "nattillsyn-ingest"
DEAD_LOG_WINDOW_S = 10.0
DEAD_LOG_PER_WINDOW = 20  # then one summary line per window: a flood must not flood the logs

# Data a database refuses (class 22 data exception, 23 integrity): isolate the culprit.
# Anything else (connection, shutdown, deadlock, disk, a missing migration) is retried:
# retrying loses nothing, dead-lettering a valid batch would.
_REFUSED_CLASSES = ("22", "23")


def reason_label(reason: str) -> str:
    """A small fixed set of metric labels for dead-letter reasons."""
    for prefix, label in (
        ("unknown topic", "unknown_topic"),
        ("payload too large", "too_large"),
        ("invalid JSON", "invalid_json"),
        ("invalid payload: not a JSON object", "not_an_object"),
        ("unknown schema version", "schema_version"),
        ("sender mismatch", "sender_mismatch"),
        ("cannot be stored", "unstorable"),
        ("database rejected", "database_rejected"),
        ("invalid ", "invalid_payload"),
    ):
        if reason.startswith(prefix):
            return label
    return "other"


INT8_MAX = 2**63 - 1


def _unstorable_string(value: object) -> str | None:
    """Why PostgreSQL text/jsonb cannot hold a string in this JSON value, if it cannot."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a string contains \\u0000 (NUL)"
        if any("\ud800" <= c <= "\udfff" for c in value):
            return "a string contains an unpaired surrogate (\\ud800-\\udfff)"
        return None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        why = _unstorable_string(item)
        if why:
            return why
    return None


def decode_for_storage(
    topics: Topics, topic: str, payload: bytes, max_payload: int
) -> Record | DeadLetter:
    """The shared contract validation, plus what PostgreSQL cannot store: text that is
    not UTF-8, NUL characters or unpaired surrogates in strings, integers beyond bigint."""
    out = decode_message(topics, topic, payload, max_payload)
    if not isinstance(out, Record):
        return out
    why = None
    if b"\\u" in payload:  # \\u escapes may hide NUL or surrogates: look closer (rare)
        try:
            why = _unstorable_string(json.loads(payload))
        except ValueError:
            why = "not UTF-8"
    # json.loads also reads UTF-16/32 and a UTF-8 BOM (anything else that is not UTF-8 was
    # already invalid JSON): only then can the text PostgreSQL gets be wrong.
    if payload[:3] == b"\xef\xbb\xbf" or b"\x00" in payload[:4]:
        why = "the payload is not UTF-8 without BOM"
    m = out.msg
    if isinstance(m, DeviceMessage) and max(m.session, m.seq) > INT8_MAX:
        why = "session or seq beyond 64 bits"
    if why:
        return DeadLetter(topic, f"cannot be stored: {why}", payload)
    return out


class IngestService:
    """One ingest worker: one MQTT session, one batch in flight to the database."""

    name = "ingest"

    def __init__(self, settings: Settings, worker: int = 0, clock: Clock = SYSTEM) -> None:
        self.settings = settings
        self.clock = clock
        self.cfg = settings.ingest
        self.worker = worker
        self.topics = Topics(settings.topic_root)
        self.pool = make_pool(
            _with_application_name(settings.database_url, f"nattillsyn-ingest-w{worker}"),
            settings.database_schema,
            min_size=1,
            max_size=2,
        )
        root = settings.topic_root.replace("/", "-")
        self.mqtt = MqttClient(
            settings.mqtt_url,
            f"{self.cfg.client_id}-{root}-w{worker}",
            clean_start=False,
            session_expiry_s=self.cfg.session_expiry_s,
            manual_ack=True,
            receive_maximum=self.cfg.receive_maximum,
            max_inflight=100,
        )
        self.maintainer = (
            Maintainer(self.pool, settings.database_schema, self.cfg.maintenance_s, clock)
            if worker == 0 and self.cfg.maintenance_s > 0
            else None
        )
        self._task: asyncio.Task | None = None
        self._flusher: asyncio.Task | None = None
        # Device summaries of committed batches, merged here and written every
        # device_flush_ms: one devices row per device per interval, not per message.
        self._devices: dict[tuple[str, str], DeviceSeen] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self.written = 0  # messages committed (stored, duplicate or dead-lettered)
        self._dead_window = [0.0, 0, 0]  # window start, logged, not logged

    def _filters(self) -> list[str]:
        shared = self.mqtt.url.v5
        out = []
        for kind in STORED_KINDS:
            f = self.topics.subscription(kind)
            out.append(f"$share/{SHARE_GROUP}/{f}" if shared else f)
        return out

    async def start(self) -> None:
        await self.pool.open(wait=True)
        if self.worker == 0 and self.cfg.apply_policies:
            try:
                await self._apply_policies()
            except psycopg.Error as exc:  # storing comes first; policies can wait
                logger.error("could not apply storage policies", error=str(exc).strip())
        await self.mqtt.start()
        await self.mqtt.subscribe(*self._filters(), qos=1)
        metrics.serve(self.cfg.metrics_port + self.worker if self.cfg.metrics_port else 0)
        if self.maintainer:
            self.maintainer.start()
        self._task = asyncio.create_task(self._run(), name=f"ingest-w{self.worker}")
        if self.cfg.device_flush_ms:
            self._flusher = asyncio.create_task(
                self._flush_devices_every(self.cfg.device_flush_ms / 1000),
                name=f"ingest-w{self.worker}-devices",
            )

    async def stop(self) -> None:
        self._stopping = True
        if self.maintainer:
            await self.maintainer.stop()
        if self._task:
            # Let a batch being written commit and be acknowledged; a batch cut short is
            # redelivered anyway, this only saves the broker the work.
            # (A deadline on real time: a test clock must not hold a stopping service.)
            await SYSTEM.wait(self._idle, 10)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._flusher:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self._flush_devices()
        await self.mqtt.stop()
        await self.pool.close()

    async def _apply_policies(self) -> None:
        c = self.cfg

        def days(n: int) -> timedelta | None:
            return timedelta(days=n) if n else None

        wanted = {
            "events": (days(c.retention_events_days), days(c.compress_after_days)),
            "room_states": (days(c.retention_room_states_days), days(c.compress_after_days)),
            "heartbeats": (days(c.retention_heartbeats_days), days(c.compress_after_days)),
            "dead_letters": (days(c.retention_dead_letters_days), None),
        }
        async with self.pool.connection() as conn:
            for table, (retention, compress) in wanted.items():
                await set_policy(conn, table, retention, compress)

    async def _run(self) -> None:
        while not self._stopping:
            batch = await self.mqtt.next_batch(self.cfg.batch_size, self.cfg.batch_ms / 1000)
            self._idle.clear()
            try:
                await self._handle(batch)
            finally:
                self._idle.set()

    async def _handle(self, batch: list[Received]) -> None:
        BACKLOG.set(self.mqtt.backlog)
        BATCH_SIZE.observe(len(batch))
        records: list[Record] = []
        dead: list[DeadLetter] = []
        kinds: Tally[str] = Tally()
        redelivered = 0
        for msg in batch:
            redelivered += msg.dup
            out = decode_for_storage(self.topics, msg.topic, msg.payload, self.cfg.max_payload)
            if isinstance(out, Record):
                records.append(out)
                kinds[out.topic.kind.value] += 1
            else:
                dead.append(replace(out, redelivered=True) if msg.dup else out)
                kinds["invalid"] += 1
        for kind, n in kinds.items():
            MESSAGES.labels(kind).inc(n)
        if redelivered:
            REDELIVERED.inc(redelivered)
        if dead:
            self._log_dead(dead)
        result = await self._write_until_done(records, dead)
        self.mqtt.ack_many(batch)
        self._keep_devices(result.deferred)
        self.written += len(batch)
        self._observe(result, records)

    def _keep_devices(self, later: list[DeviceSeen]) -> None:
        pending = self._devices
        for d in later:
            key = (d.site, d.device)
            earlier = pending.get(key)
            if earlier is None:
                pending[key] = d
            else:
                earlier.absorb(d)

    async def _flush_devices_every(self, interval: float) -> None:
        while True:
            await self.clock.sleep(interval)
            await self._flush_devices()

    async def _flush_devices(self) -> None:
        """Write the pending device summaries; on failure keep them for the next time
        (a summary the database refuses is dropped: the messages are stored)."""
        if not self._devices:
            return
        taken, self._devices = self._devices, {}
        try:
            async with self.pool.connection() as conn, conn.transaction():
                DEVICE_ROWS.inc(await write_devices(conn, taken.values()))
        except (psycopg.Error, PoolTimeout) as exc:
            state = getattr(exc, "sqlstate", None) or ""
            if state[:2] in _REFUSED_CLASSES:
                logger.error("device summaries refused; dropped", error=str(exc).strip())
                return
            logger.warning("device summaries not written; kept", error=str(exc).strip())
            later, self._devices = self._devices, taken
            self._keep_devices(list(later.values()))

    def _log_dead(self, dead: list[DeadLetter]) -> None:
        now = self.clock.monotonic()
        if now - self._dead_window[0] > DEAD_LOG_WINDOW_S:
            if self._dead_window[2]:
                logger.warning(
                    "more dead letters not logged",
                    count=self._dead_window[2],
                    window_s=DEAD_LOG_WINDOW_S,
                )
            self._dead_window = [now, 0, 0]
        for d in dead:
            if self._dead_window[1] < DEAD_LOG_PER_WINDOW:
                self._dead_window[1] += 1
                logger.warning("dead letter", topic=d.topic, reason=d.reason, size=len(d.payload))
            else:
                self._dead_window[2] += 1

    def _observe(self, result: BatchResult, records: list[Record]) -> None:
        for table, n in result.inserted.items():
            if n:
                ROWS.labels(table).inc(n)
        if result.duplicates:
            DUPLICATES.inc(result.duplicates)
        if result.device_rows:
            DEVICE_ROWS.inc(result.device_rows)
        now = datetime.now(UTC)  # a measurement against the devices' wall time, not a timer
        newest = None
        for r in records:
            m = r.msg
            if isinstance(m, DeviceMessage):
                LATENCY.observe(max(0.0, (now - m.ts).total_seconds()))
                if newest is None or m.ts > newest:
                    newest = m.ts
        if newest is not None:
            LAG.set((now - newest).total_seconds())

    async def _write_until_done(self, records: list[Record], dead: list[DeadLetter]) -> BatchResult:
        """Write until committed: retry while the database is unavailable; bisect a
        batch it refuses until the refused message is found and dead-lettered."""
        delay = 0.1
        while True:
            try:
                t0 = time.perf_counter()
                async with self.pool.connection() as conn:
                    result = await write_batch(
                        conn, records, dead, defer=self.cfg.device_flush_ms > 0
                    )
                BATCH_SECONDS.observe(time.perf_counter() - t0)
                for d in dead:
                    DEAD.labels(reason_label(d.reason)).inc()
                return result
            except (psycopg.Error, ValueError, OverflowError) as exc:
                # Not a psycopg error: a value the driver could not encode (data, not the
                # database's state); psycopg's own: by SQLSTATE.
                state = getattr(exc, "sqlstate", None) or ""
                refused = not isinstance(exc, psycopg.Error) or state[:2] in _REFUSED_CLASSES
                if not refused:
                    DB_ERRORS.labels("retry").inc()
                    logger.error(
                        "database write failed; retrying",
                        error=str(exc).strip(),
                        sqlstate=state,
                        retry_in_s=delay,
                    )
                    await self.clock.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                DB_ERRORS.labels("isolate").inc()
                if len(records) <= 1:
                    dead = dead + [
                        DeadLetter(r.topic_str, f"database rejected: {str(exc).strip()}", r.raw)
                        for r in records
                    ]
                    records = []
                    continue
                logger.warning(
                    "batch refused; isolating", error=str(exc).strip(), size=len(records)
                )
                half = len(records) // 2
                first = await self._write_until_done(records[:half], dead)
                second = await self._write_until_done(records[half:], [])
                return _merge(first, second)
            except PoolTimeout as exc:
                DB_ERRORS.labels("retry").inc()
                logger.error("database unreachable; retrying", error=str(exc), retry_in_s=delay)
                await self.clock.sleep(delay)
                delay = min(delay * 2, 10.0)


def _merge(a: BatchResult, b: BatchResult) -> BatchResult:
    out = BatchResult(
        dict(a.inserted),
        a.duplicates + b.duplicates,
        a.dead_letters + b.dead_letters,
        a.deferred + b.deferred,
        a.device_rows + b.device_rows,
    )
    for table, n in b.inserted.items():
        out.inserted[table] = out.inserted.get(table, 0) + n
    return out


def _with_application_name(url: str | None, name: str) -> str:
    """The worker's name in pg_stat_activity (operators see who holds what)."""
    assert url is not None
    params = conninfo_to_dict(url)
    params.setdefault("application_name", name)
    return make_conninfo(**params)


class IngestSupervisor:
    """Runs `workers` ingest worker processes and restarts any that exits.

    Each worker is `nattillsyn ingest --worker N` with the same settings; a worker
    killed mid-batch loses nothing (its session keeps the unacknowledged messages
    and the restarted worker, with the same client id, receives them again)."""

    name = "ingest"

    def __init__(
        self,
        settings: Settings,
        workers: int,
        config_file: str | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.workers = workers
        self.config_file = config_file
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    def _command(self, worker: int) -> list[str]:
        cmd = [sys.executable, "-m", "nattillsyn.app.cli"]
        if self.config_file:
            cmd += ["--config", self.config_file]
        return [*cmd, "ingest", "--worker", str(worker)]

    async def _spawn(self, worker: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*self._command(worker), env=os.environ.copy())
        self.procs[worker] = proc
        logger.info("ingest worker started", worker=worker, pid=proc.pid)
        return proc

    async def _watch(self, worker: int) -> None:
        delay = 0.5
        while not self._stopping:
            proc = self.procs[worker]
            t0 = self.clock.monotonic()
            code = await proc.wait()
            if self._stopping:
                return
            logger.error("ingest worker exited; restarting", worker=worker, code=code)
            self.restarts += 1
            delay = 0.5 if self.clock.monotonic() - t0 > 60 else min(delay * 2, 30.0)
            await self.clock.sleep(delay)
            if not self._stopping:
                await self._spawn(worker)

    async def start(self) -> None:
        for i in range(self.workers):
            await self._spawn(i)
        self._tasks = [asyncio.create_task(self._watch(i)) for i in range(self.workers)]

    async def stop(self) -> None:
        self._stopping = True
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def services(settings: Settings, worker: int | None, config_file: str | None = None) -> list:
    """What `nattillsyn ingest` runs: one worker in this process, or a supervisor."""
    if worker is not None:
        return [IngestService(settings, worker)]
    workers = settings.ingest.workers
    if workers > 1 and not MqttUrl.parse(settings.mqtt_url or "").v5:
        logger.warning(
            "shared subscriptions need MQTT 5: running one ingest worker", workers=workers
        )
        workers = 1
    if workers == 1:
        return [IngestService(settings, 0)]
    return [IngestSupervisor(settings, workers, config_file)]
