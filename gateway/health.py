"""What the gateway says about itself: a retained `GatewayStatus` to the site broker and
the centre every `heartbeat_s` (the centre raises "site offline" when it stops), the mode
on the local tablet page, and a system alert while the spool is nearly full.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime

from nattillsyn import __version__, log
from nattillsyn.alerting.site_watch import GATEWAY_STORAGE
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.mqtt import MqttClient, Will
from nattillsyn.protocol import GatewayMode, GatewayStatus, TopicKind, Topics, encode
from nattillsyn.settings.gateway import GatewaySettings

from .local import LocalSite
from .modes import ModeMachine
from .spool import Spool

logger = log.get(__name__)


def status_topic(topics: Topics, site: str) -> str:
    return topics.site(site, TopicKind.gateway)


def offline_will(topics: Topics, site: str, gateway: str, session: int) -> Will:
    """The centre's news of a gateway that vanished (crash, cut link)."""
    status = GatewayStatus(site=site, gateway=gateway, session=session, seq=0, state="offline")
    return Will(status_topic(topics, site), encode(status))


class Health:
    def __init__(
        self,
        site: str,
        cfg: GatewaySettings,
        topics: Topics,
        session: int,
        clients: tuple[MqttClient, MqttClient],  # (site broker, centre)
        spool: Spool,
        machine: ModeMachine,
        site_services: LocalSite | None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.site = site
        self.cfg = cfg
        self.topic = status_topic(topics, site)
        self.session = session
        self.local, self.upstream = clients
        self.spool = spool
        self.machine = machine
        self.site_services = site_services
        self.clock = clock
        self._seq = 0
        self.warn_since: datetime | None = None

    def status(self, state: str = "online") -> GatewayStatus:
        self._seq += 1
        m, sp = self.machine, self.spool
        return GatewayStatus(
            site=self.site,
            gateway=self.cfg.id,
            session=self.session,
            seq=self._seq,
            state=state,  # type: ignore[arg-type]
            mode=m.mode,
            mode_since=m.mode_since,
            interval_s=self.cfg.heartbeat_s,
            spool_messages=sp.count,
            spool_bytes=sp.bytes,
            spool_limit_bytes=sp.max_bytes,
            spool_warn_since=self.warn_since,
            dropped=sum(sp.dropped.values()),
            version=__version__[:32],
        )

    async def send(self) -> None:
        payload = encode(self.status())
        with contextlib.suppress(Exception):
            self.local.publish_nowait(self.topic, payload, qos=1, retain=True)
        if self.upstream.connected.is_set():
            with contextlib.suppress(Exception):
                self.upstream.publish_nowait(self.topic, payload, qos=1, retain=True)

    async def say_offline(self) -> None:
        """A clean stop says so (the will is for crashes and cut links)."""
        if self.upstream.connected.is_set():
            with contextlib.suppress(Exception):
                await self.upstream.publish(
                    self.topic, encode(self.status("offline")), retain=True, timeout=5
                )

    async def beat(self) -> None:
        n = 0
        while True:
            await self.send()
            n += 1
            if self.machine.mode is not GatewayMode.normal and n % 2 == 0:
                await self.tell_tablets()
            await self.clock.sleep(self.cfg.heartbeat_s)

    async def tell_tablets(self) -> None:
        """The local tablet page shows whether the gateway alerts on site (live channel)."""
        if self.site_services is None:
            return
        since = self.machine.mode_since
        await self.site_services.notify_live(
            json.dumps(
                {
                    "schema": self.site_services.schema,
                    "site": self.site,
                    "type": "system",
                    "alerting_ok": True,
                    "gateway_mode": self.machine.mode.value,
                    "gateway_since": since.isoformat() if since else None,
                }
            )
        )

    async def storage_alert(self, now: datetime) -> None:
        """Spool above its warning level: a system alert (on site, and at the centre from the
        status, under the same id)."""
        alerting = self.site_services.alerting if self.site_services else None
        warn = self.spool.warning
        if warn and self.warn_since is None:
            self.warn_since = now
            logger.error("spool nearly full", fill=round(self.spool.fill_ratio, 3))
            await self.send()
        elif (
            not warn
            and self.warn_since is not None
            and self.spool.fill_ratio < (self.cfg.spool_warn_ratio * 0.9)
        ):
            self.warn_since = None
            if alerting is not None:
                await alerting.resolve_site(self.site, GATEWAY_STORAGE, now)
            await self.send()
        if self.warn_since is not None and alerting is not None:
            episode = f"storage:{self.cfg.id}:{self.warn_since.isoformat()}"
            await alerting.raise_site(self.site, GATEWAY_STORAGE, episode, self.warn_since, now)


__all__ = ["Health", "offline_will", "status_topic"]
