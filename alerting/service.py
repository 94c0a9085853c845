"""Alerting: events and device availability in, alerts for staff out.

It owns alert state: staff actions arrive as AlertAction on `…/alert/set` and
every change is stored, then published as an Alert on `…/alert`. A firing alert
is published again every `repeat_s` until someone acknowledges it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import psycopg
from prometheus_client import Counter, Gauge, Histogram
from psycopg_pool import PoolTimeout

from nattillsyn import log, metrics
from nattillsyn.db.pool import make_pool
from nattillsyn.ids import new_id
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import (
    Alert,
    AlertAction,
    AlertStatus,
    Availability,
    Event,
    TopicKind,
    Topics,
    encode,
)
from nattillsyn.protocol.validate import Record, decode_message
from nattillsyn.settings import Settings

from . import lifecycle, rules, store
from .rules import Trigger

logger = log.get(__name__)
T = TypeVar("T")

RAISED = Counter("nattillsyn_alerting_alerts_total", "Alerts raised", ["kind", "priority"])
ACTIONS = Counter("nattillsyn_alerting_actions_total", "Staff actions applied", ["action"])
REJECTED = Counter("nattillsyn_alerting_rejected_total", "Messages ignored as invalid")
FIRING = Gauge("nattillsyn_alerting_firing", "Alerts firing (unacknowledged)")
LATENCY = Histogram(
    "nattillsyn_alerting_event_to_alert_seconds",
    "Source time of the event to publication of its alert",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


class AlertingService:
    name = "alerting"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cfg = settings.alerting
        self.topics = Topics(settings.topic_root)
        self.pool = make_pool(settings.database_url, settings.database_schema, max_size=4)
        self.mqtt = MqttClient(
            settings.mqtt_url, f"{self.cfg.client_id}-{settings.topic_root.replace('/', '-')}"
        )
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        await self.pool.open(wait=True)
        await self.mqtt.start()
        await self.mqtt.subscribe(
            self.topics.subscription(TopicKind.event),
            self.topics.subscription(TopicKind.availability),
            self.topics.subscription(TopicKind.alert_set),
        )
        metrics.serve(self.cfg.metrics_port)
        self._tasks = [
            asyncio.create_task(self._consume(), name="alerting-consume"),
            asyncio.create_task(self._repeat(), name="alerting-repeat"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.mqtt.stop()
        await self.pool.close()

    # -- loops -------------------------------------------------------------------

    async def _consume(self) -> None:
        async for msg in self.mqtt.messages():
            out = decode_message(self.topics, msg.topic, msg.payload, 65536)
            if not isinstance(out, Record):
                REJECTED.inc()
                logger.warning("ignored invalid message", topic=msg.topic, reason=out.reason)
                continue
            try:
                await self._handle(out)
            except asyncio.CancelledError:
                raise
            except Exception:
                # One bad message must not stop alerting for everyone else.
                logger.exception("handling failed", topic=msg.topic)

    async def _repeat(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.repeat_s)
            try:
                alerts = await self._db(store.firing)
            except Exception:
                logger.exception("repeat query failed")
                continue
            FIRING.set(len(alerts))
            for alert in alerts:
                await self._publish(lifecycle.republished(alert))

    # -- handlers ------------------------------------------------------------------

    async def _handle(self, rec: Record) -> None:
        msg = rec.msg
        if isinstance(msg, Event):
            trigger = rules.for_event(msg)
            if trigger:
                await self._raise(trigger, msg.site, msg.room, msg.device, msg.start, msg.event_id)
                LATENCY.observe(max(0.0, (datetime.now(UTC) - msg.ts).total_seconds()))
        elif isinstance(msg, Availability):
            trigger = rules.for_availability(msg)
            if trigger:
                await self._raise(trigger, msg.site, msg.room, msg.device, msg.ts, None)
            elif msg.state == "online":
                await self._auto_resolve(msg.site, msg.room, msg.device, "device_offline")
        elif isinstance(msg, AlertAction):
            await self._act(msg)

    async def _raise(
        self, trigger: Trigger, site: str, room: str, device: str, started: datetime, source
    ) -> None:
        async def existing(conn):
            return await store.open_alert(conn, site, room, trigger.kind)

        if await self._db(existing):
            return  # one open alert per room and kind: no repeat storms
        room_name = await self._db(lambda conn: store.room_name(conn, site, room))
        alert = Alert(
            alert_id=new_id(),
            site=site,
            room=room,
            device=device,
            kind=trigger.kind,
            priority=trigger.priority,
            status=AlertStatus.firing,
            title=trigger.title.format(room=room_name),
            started=started,
            source_event=source,
        )
        if await self._db(lambda conn: store.insert(conn, alert)):
            RAISED.labels(trigger.kind, trigger.priority.value).inc()
            logger.info(
                "alert raised", kind=trigger.kind, site=site, room=room, alert=str(alert.alert_id)
            )
            await self._publish(alert)

    async def _auto_resolve(self, site: str, room: str, device: str, kind: str) -> None:
        alert = await self._db(lambda conn: store.open_alert(conn, site, room, kind, device))
        if alert is None:
            return
        t = lifecycle.resolve(alert, datetime.now(UTC))
        await self._db(lambda conn: store.update(conn, t.alert, "system"))
        await self._publish(t.alert)

    async def _act(self, action: AlertAction) -> None:
        alert = await self._db(lambda conn: store.get(conn, action.alert_id))
        if alert is None:
            logger.warning("action on unknown alert", alert=str(action.alert_id))
            return
        try:
            if action.action == "acknowledge":
                t = lifecycle.acknowledge(alert, action.by, action.ts)
            else:
                t = lifecycle.resolve(alert, action.ts)
        except lifecycle.InvalidTransition as exc:
            logger.info("action refused", alert=str(action.alert_id), reason=str(exc))
            await self._publish(lifecycle.republished(alert))
            return
        if t.changed:
            await self._db(lambda conn: store.update(conn, t.alert, action.by, action.outcome))
            ACTIONS.labels(action.action).inc()
        await self._publish(t.alert if t.changed else lifecycle.republished(alert))

    # -- I/O helpers -------------------------------------------------------------------

    async def _publish(self, alert: Alert) -> None:
        topic = self.topics.room(alert.site, alert.room, TopicKind.alert)
        await self.mqtt.publish(topic, encode(alert), qos=1, timeout=None)

    async def _db(self, fn: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """Run `fn` on a pooled connection, waiting out database outages."""
        delay = 0.2
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await fn(conn)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                logger.error("database unreachable; retrying", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
