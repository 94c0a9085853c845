"""The centre watching its care-home gateways (setting `gateway.watch_sites`): "site offline"
to the on-call role, a site's rooms left to its gateway while it alerts, each site's snapshot
published, and the uploads of a gateway merged and answered."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.protocol import (
    CentreStatus,
    GatewayStatus,
    GatewaySync,
    GatewaySyncAck,
    TopicKind,
    encode,
)
from nattillsyn.protocol.topics import SITE_ROOM
from nattillsyn.settings import Settings

from . import alerts_db, gateway_sync, lifecycle
from .paging import Pager
from .room_watch import RoomWatch
from .site_watch import SiteWatch

logger = log.get(__name__)


class GatewayWatch:
    def __init__(
        self,
        settings: Settings,
        sites: SiteWatch,
        pager: Pager,
        rooms: RoomWatch,
        changed: Callable[[], None],
        clock: Clock = SYSTEM,
    ) -> None:
        self.sites = sites
        self.pager, self.rooms = pager, rooms
        self.db, self.mqtt, self.topics = pager.db, pager.mqtt, pager.topics
        self.changed = changed  # a new gateway: its snapshot goes out with the next reload
        self.clock = clock
        self.snapshot_every = settings.gateway.snapshot_interval_s
        self._snapshots: dict[str, tuple[str, float]] = {}  # site → (digest, published at)
        self._held: set[str] = set()  # sites whose rooms their gateway has now

    def subscriptions(self) -> list[str]:
        return [
            self.topics.subscription(TopicKind.gateway),
            self.topics.subscription(TopicKind.gateway_sync),
        ]

    async def on_status(self, msg: GatewayStatus) -> None:
        now = self.clock.now()
        if self.sites.apply(msg, now):
            logger.info("gateway heard", site=msg.site, gateway=msg.gateway, mode=msg.mode.value)
            self.changed()
        await self.check(now)

    async def check(self, now: datetime) -> None:
        """Site offline / gateway storage alerts; rooms of a handed-back site evaluated at once."""
        conds = self.sites.conditions(now)
        holding = {(c.site, c.kind) for c in conds}
        for oa in self.pager.book:
            a = oa.alert
            if a.room == SITE_ROOM and not a.practice and (a.site, a.kind) not in holding:
                await self.pager.resolve(oa, now, lifecycle.SYSTEM, None)
        for c in conds:
            await self.pager.raise_site(c.site, c.kind, c.episode, c.since, now)
        for site in list(self.sites.sites):
            held = self.sites.suppressed(site, now)
            if site in self._held and not held:
                logger.info("site handed back by its gateway", site=site)
                self.rooms.recheck_site(site, now)
            (self._held.add if held else self._held.discard)(site)

    def beacon(self, interval_s: float) -> None:
        """Tell each gateway the centre is alive and in charge (QoS 0: never queued, so a
        stale one cannot arrive after an outage)."""
        now = self.clock.now()
        for site in list(self.sites.sites):
            msg = CentreStatus(
                site=site, interval_s=interval_s, suppressed=self.pager.suppressed(site, now)
            )
            self.mqtt.publish_nowait(self.topics.site(site, TopicKind.centre), encode(msg), qos=0)

    async def publish_snapshots(self) -> None:
        for site in list(self.sites.sites):
            snap = await self.db.run(lambda conn, s=site: gateway_sync.build_snapshot(conn, s))
            if snap is None:
                continue
            last = self._snapshots.get(site)
            if (
                last
                and last[0] == snap.digest
                and self.clock.monotonic() - last[1] < self.snapshot_every
            ):
                continue
            topic = self.topics.site(site, TopicKind.gateway_config)
            await self.mqtt.publish(topic, encode(snap), qos=1, retain=True, timeout=None)
            self._snapshots[site] = (snap.digest, self.clock.monotonic())

    async def on_upload(self, msg: GatewaySync) -> None:
        """Merge an upload, take over the schedules of what is still open, answer."""
        try:
            result = await self.db.run(lambda conn: gateway_sync.import_sync(conn, msg))
        except Exception as exc:
            logger.exception("gateway upload refused", site=msg.site, gateway=msg.gateway)
            ack = GatewaySyncAck(
                site=msg.site, correlation_id=msg.correlation_id, ok=False, error=str(exc)[:500]
            )
        else:
            for aid in dict.fromkeys(result.alerts):
                stored = await self.db.run(lambda conn, a=aid: alerts_db.get_stored(conn, a))
                if stored is None:
                    continue
                self.pager.book.follow(stored)
                # Its state, never a sound.
                await self.pager.publish(lifecycle.republished(stored.alert))
            logger.info(
                "gateway upload merged", site=msg.site, gateway=msg.gateway, stored=result.stored
            )
            ack = GatewaySyncAck(
                site=msg.site, correlation_id=msg.correlation_id, ok=True, stored=result.stored
            )
        topic = self.topics.site(msg.site, TopicKind.gateway_sync_ack)
        await self.mqtt.publish(topic, encode(ack), qos=1, timeout=None)
