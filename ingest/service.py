"""Ingest: MQTT → PostgreSQL/TimescaleDB, acknowledged only after the commit.

A persistent MQTT session with manual acknowledgement means a crash mid-batch
leads to redelivery, never loss; idempotent writes make redelivery harmless.
With MQTT 5 workers share the load through a shared subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import paho.mqtt.client as paho
import psycopg
from prometheus_client import Counter, Gauge, Histogram
from psycopg_pool import PoolTimeout

from nattillsyn import log, metrics
from nattillsyn.db.pool import make_pool
from nattillsyn.mqtt import MqttClient, Received
from nattillsyn.protocol import DeviceMessage, TopicKind, Topics
from nattillsyn.protocol.validate import DeadLetter, Record, decode_message
from nattillsyn.settings import Settings

from .writer import write_batch

logger = log.get(__name__)

MESSAGES = Counter("nattillsyn_ingest_messages_total", "MQTT messages received", ["kind"])
ROWS = Counter("nattillsyn_ingest_rows_total", "Rows inserted", ["table"])
DUPLICATES = Counter("nattillsyn_ingest_duplicates_total", "Messages already stored (redeliveries)")
DEAD = Counter("nattillsyn_ingest_dead_letters_total", "Messages sent to the dead-letter table")
BATCH_SECONDS = Histogram("nattillsyn_ingest_batch_seconds", "Time to write one batch")
LAG = Gauge("nattillsyn_ingest_lag_seconds", "Commit time minus source time of the newest message")
BACKLOG = Gauge("nattillsyn_ingest_backlog", "Messages received and not yet written")

STORED_KINDS = (
    TopicKind.event,
    TopicKind.state,
    TopicKind.heartbeat,
    TopicKind.availability,
    TopicKind.config_state,
)
SHARE_GROUP = "nattillsyn-ingest"
SESSION_EXPIRY_S = 7 * 24 * 3600


class IngestService:
    name = "ingest"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cfg = settings.ingest
        self.topics = Topics(settings.topic_root)
        self.pool = make_pool(settings.database_url, settings.database_schema, max_size=4)
        self.mqtt = MqttClient(
            settings.mqtt_url,
            f"{self.cfg.client_id}-{settings.topic_root.replace('/', '-')}",
            clean_start=False,
            session_expiry_s=SESSION_EXPIRY_S,
            manual_ack=True,
            receive_maximum=min(self.cfg.batch_size * 2, 65535),
            max_inflight=100,
        )
        self._task: asyncio.Task | None = None
        self.written = 0  # messages committed (stored, duplicate or dead-lettered)

    def _filters(self) -> list[str]:
        shared = self.mqtt.url.protocol == paho.MQTTv5
        out = []
        for kind in STORED_KINDS:
            f = self.topics.subscription(kind)
            out.append(f"$share/{SHARE_GROUP}/{f}" if shared else f)
        return out

    async def start(self) -> None:
        await self.pool.open(wait=True)
        await self.mqtt.start()
        await self.mqtt.subscribe(*self._filters(), qos=1)
        metrics.serve(self.cfg.metrics_port)
        self._task = asyncio.create_task(self._run(), name="ingest")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.mqtt.stop()
        await self.pool.close()

    async def _collect(self) -> list[Received]:
        """Block for the first message, then take more until the size or time bound."""
        batch = [await self.mqtt.next_message()]
        deadline = time.monotonic() + self.cfg.batch_ms / 1000
        while len(batch) < self.cfg.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await self.mqtt.next_message(remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            BACKLOG.set(self.mqtt.backlog)
            records: list[Record] = []
            dead: list[DeadLetter] = []
            for msg in batch:
                out = decode_message(self.topics, msg.topic, msg.payload, self.cfg.max_payload)
                if isinstance(out, Record):
                    records.append(out)
                    MESSAGES.labels(out.topic.kind.value).inc()
                else:
                    dead.append(out)
                    MESSAGES.labels("invalid").inc()
                    logger.warning("dead letter", topic=out.topic, reason=out.reason)
            await self._write_until_done(records, dead)
            for msg in batch:
                self.mqtt.ack(msg)
            self.written += len(batch)

    async def _write_until_done(self, records: list[Record], dead: list[DeadLetter]) -> None:
        """Retry while the database is unreachable; a row it rejects goes to dead letters."""
        delay = 0.2
        while True:
            try:
                t0 = time.perf_counter()
                async with self.pool.connection() as conn:
                    result = await write_batch(conn, records, dead)
                BATCH_SECONDS.observe(time.perf_counter() - t0)
                break
            except (psycopg.OperationalError, PoolTimeout) as exc:
                logger.error("database unreachable; retrying", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except psycopg.Error as exc:
                # Valid per the contract but refused by the database: isolate the culprit(s).
                if len(records) <= 1:
                    dead = dead + [
                        DeadLetter(r.topic_str, f"database rejected: {exc}", r.raw) for r in records
                    ]
                    records = []
                    continue
                logger.warning("batch rejected; writing one by one", error=str(exc))
                for rec in records:
                    await self._write_until_done([rec], [])
                records = []
        for table, n in result.inserted.items():
            ROWS.labels(table).inc(n)
        DUPLICATES.inc(result.duplicates)
        DEAD.inc(result.dead_letters)
        newest = max((r.msg.ts for r in records if isinstance(r.msg, DeviceMessage)), default=None)
        if newest is not None:
            LAG.set((datetime.now(UTC) - newest).total_seconds())
