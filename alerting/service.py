"""Alerting: room messages in, alerts for staff out; digital rounds at the agreed times.

Messages (events, states, heartbeats, availability) are folded into per-room facts and the
room's rules evaluated (`room_watch`), only while `monitoring_active` holds (the SQL function
is checked again, in the same statement, when an alert is stored). Alert state lives in the
database (`alerts_db`); every change is published as an Alert on `<root>/<site>/<room>/alert`
and repeated, escalated and re-sounded by the `paging` part. Staff actions arrive as
AlertAction on `…/alert/set` (`staff_actions`). Round entries are made by `round_producer`.

Alert ids are derived from the episode that raised them (`rules.alert_id`), so a care-home
gateway running this same service on its site's messages names its alerts alike. There it
runs in **standby** (`standby = True`): it stores and follows every alert but announces
nothing until the gateway takes over (`takeover`). At the centre it watches the gateways
(`gateway_watch`, setting `gateway.watch_sites`).

This module composes the parts and runs their loops; every timer runs on `clock`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from prometheus_client import Counter

from nattillsyn import log, metrics
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.db.listen import listen
from nattillsyn.db.pool import make_pool
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import (
    Alert,
    AlertAction,
    Availability,
    Event,
    GatewayStatus,
    GatewaySync,
    Heartbeat,
    RoomState,
    TopicKind,
)
from nattillsyn.protocol.validate import Record, decode_message
from nattillsyn.service import cancel_all
from nattillsyn.settings import Settings

from . import alerts_db, care, rules, staff_actions
from .database import Database
from .gateway_watch import GatewayWatch
from .open_alerts import OpenAlert, OpenAlerts
from .paging import Pager
from .room_watch import RoomWatch
from .round_producer import RoundProducer
from .site_watch import SiteWatch

logger = log.get(__name__)
ALIVE_S = 5.0  # liveness row written this often
MAX_PAYLOAD = 1 << 20  # gateway uploads come in batches of up to ~1 MB

REJECTED = Counter("nattillsyn_alerting_rejected_total", "Messages ignored as invalid")


class AlertingService:
    name = "alerting"

    def __init__(self, settings: Settings, clock: Clock = SYSTEM) -> None:
        self.settings = settings
        self.cfg = settings.alerting
        self.clock = clock
        self.pool = make_pool(settings.database_url, settings.database_schema, max_size=6)
        self.db = Database(self.pool, clock)
        self.mqtt = MqttClient(
            settings.mqtt_url, f"{self.cfg.client_id}-{settings.topic_root.replace('/', '-')}"
        )
        self.care = care.CareModel()
        self.book = OpenAlerts()
        gw = settings.gateway
        self.sites = SiteWatch(gw.site_offline_after_s) if gw.watch_sites else None
        self._refresh = asyncio.Event()
        self.pager = Pager(
            settings, self.db, self.mqtt, self.care, self.book, self.sites, self._refresh.set, clock
        )
        self.topics = self.pager.topics
        self.room_watch = RoomWatch(rules.SystemTiming.from_settings(self.cfg), self.pager, clock)
        self.gateways = (
            GatewayWatch(
                settings, self.sites, self.pager, self.room_watch, self._refresh.set, clock
            )
            if self.sites is not None
            else None
        )
        self.round_producer = RoundProducer(self.cfg, settings.database_schema, self.db, clock)
        self._tasks: list[asyncio.Task] = []

    # -- what the gateway and the tests see -------------------------------------------------

    @property
    def rooms(self) -> dict[tuple[str, str], care.RoomCare]:
        return self.care.rooms

    @property
    def silences(self) -> list[care.Silence]:
        return self.care.silences

    @property
    def visits(self) -> set[tuple[str, str]]:
        return self.care.visits

    @property
    def open(self) -> dict[str, OpenAlert]:
        """Open alerts by id."""
        return self.book.by_id

    @property
    def standby(self) -> bool:
        """On a gateway: store and follow, announce nothing (`on_held` sees what would go out)."""
        return self.pager.standby

    @standby.setter
    def standby(self, value: bool) -> None:
        self.pager.standby = value

    @property
    def on_held(self) -> Callable[[Alert], None] | None:
        return self.pager.on_held

    @on_held.setter
    def on_held(self, fn: Callable[[Alert], None] | None) -> None:
        self.pager.on_held = fn

    async def takeover(self, announce: set[uuid.UUID]) -> int:
        """Stop holding back: announce the open alerts in `announce` as new (they were never
        published by the centre) and republish the others silently. Returns how many sounded."""
        return await self.pager.takeover(announce)

    def hand_back(self) -> None:
        """Back to standby: the centre announces again."""
        self.pager.standby = True

    async def raise_site(
        self, site: str, kind: str, episode: str, since: datetime, now: datetime
    ) -> bool:
        """A site-level alert (room `_site`): see `Pager.raise_site`."""
        return await self.pager.raise_site(site, kind, episode, since, now)

    async def resolve_site(self, site: str, kind: str, now: datetime) -> None:
        await self.pager.resolve_site(site, kind, now)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.pool.open(wait=True)
        await self._reload_care(initial=True)
        for stored in await self.db.run(alerts_db.open_alerts):
            self.book.follow(stored)
        for key, (device, hb) in (await self.db.run(care.load_heartbeats)).items():
            f = self.room_watch.facts_of(key)
            f.last_heartbeat, f.device = hb, device
        await self.mqtt.start()
        kinds = (
            TopicKind.event,
            TopicKind.state,
            TopicKind.heartbeat,
            TopicKind.availability,
            TopicKind.alert_set,
        )
        filters = [self.topics.subscription(k) for k in kinds]
        if self.gateways is not None:
            filters += self.gateways.subscriptions()
        await self.mqtt.subscribe(*filters)
        metrics.serve(self.cfg.metrics_port)
        loops: dict[str, Awaitable[None]] = {
            "consume": self._consume(),
            "tick": self._every(self.cfg.tick_s, self._tick_now, "tick failed", wait_first=True),
            "care": self._care_loop(),
            "listen": self._listen(),
            "rounds": self._every(
                self.cfg.round_check_s, self.round_producer.produce, "rounds failed"
            ),
            "alive": self._every(ALIVE_S, self._alive, "liveness write failed"),
        }
        self._tasks = [
            asyncio.create_task(coro, name=f"alerting-{name}") for name, coro in loops.items()
        ]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        await self.pager.close()
        await self.mqtt.stop()
        await self.pool.close()

    # -- loops ---------------------------------------------------------------------------------

    async def _every(
        self,
        seconds: float,
        work: Callable[[], Awaitable[None]],
        failed: str,
        wait_first: bool = False,
    ) -> None:
        """Run `work` every `seconds` of the clock; a failure is logged, never fatal."""
        if wait_first:
            await self.clock.sleep(seconds)
        while True:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(failed)
            await self.clock.sleep(seconds)

    async def _consume(self) -> None:
        async for msg in self.mqtt.messages():
            out = decode_message(self.topics, msg.topic, msg.payload, MAX_PAYLOAD)
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

    async def _handle(self, rec: Record) -> None:
        msg = rec.msg
        if isinstance(msg, GatewayStatus | GatewaySync):
            if self.gateways is None:
                return
            if isinstance(msg, GatewayStatus):
                await self.gateways.on_status(msg)
            else:
                await self.gateways.on_upload(msg)
        elif isinstance(msg, AlertAction):
            if msg.action == "raise_practice":
                await staff_actions.practice(self.pager, msg, rec.topic.site, rec.topic.room)
            else:
                await staff_actions.act(self.pager, msg)
        elif isinstance(msg, RoomState | Event | Heartbeat | Availability):
            await self.room_watch.on_message(msg)

    async def _tick_now(self) -> None:
        await self.tick(self.clock.now())

    async def tick(self, now: datetime) -> None:
        """Delays, system conditions, auto-resolve, then repeats/escalation/re-sound."""
        if self.gateways is not None:
            await self.gateways.check(now)
        await self.room_watch.tick(now)
        await self.pager.schedule_all(now)

    async def _care_loop(self) -> None:
        wait = self.cfg.care_refresh_s
        if self.gateways is not None:
            wait = min(wait, self.gateways.snapshot_every)
        while True:
            await self.clock.wait(self._refresh, wait)
            self._refresh.clear()
            try:
                await self._reload_care()
                if self.gateways is not None:
                    await self.gateways.publish_snapshots()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("care model reload failed")

    async def _reload_care(self, initial: bool = False) -> None:
        now = self.clock.now()
        changed = await self.db.run(lambda conn: self.care.reload(conn, now, initial))
        self.room_watch.recheck(changed, now)  # rules or monitoring changed: look again

    async def _listen(self) -> None:
        """LISTEN for care-model and silence changes: a pause stops alerting at once."""
        schema = self.settings.database_schema

        def note(payload: str) -> None:
            if payload.split(".", 1)[0] == schema:
                self._refresh.set()

        # on (re)listening: reload anything missed meanwhile
        await listen(
            self.settings.database_url,
            care.CARE_CHANNEL,
            note,
            clock=self.clock,
            on_listening=self._refresh.set,
        )

    async def _alive(self) -> None:
        """Liveness for the tablets: the api warns staff when this stops (see LiveHub)."""
        try:
            async with self.pool.connection() as conn:
                await conn.execute(
                    """INSERT INTO service_heartbeats (service, instance, at)
                       VALUES ('alerting', %s, now())
                       ON CONFLICT (service) DO UPDATE SET instance = EXCLUDED.instance,
                           at = EXCLUDED.at""",
                    (f"{socket.gethostname()}:{os.getpid()}",),
                )
            if self.gateways is not None:
                self.gateways.beacon(ALIVE_S)
        except Exception as exc:
            logger.warning("liveness write failed", error=str(exc))


__all__ = ["AlertingService"]
