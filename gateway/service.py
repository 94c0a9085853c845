"""The care-home gateway: one process on a small box in each care home.

- **Bridge** (`bridge.Bridge`) between the site's Mosquitto and the central broker (TLS),
  with every site message on disk (`spool.Spool`) until the centre confirmed it.
- **Replica** of the site's configuration (`replica`), from the centre's retained snapshot,
  in a local PostgreSQL with the project's own schema.
- **Local alerting**: the project's `AlertingService`, `IngestService` and `ApiService`
  (the tablet page) run on the site broker and the local database. Alerting runs in
  standby while the centre is in charge: same messages, same rules, same alert ids, nothing
  announced. When the centre falls silent (`modes.ModeMachine`) the gateway **takes over**:
  its alerting announces, local tablets are told (red banner "Reservläge"). When the centre
  is back it uploads what happened (`upload`, `sync`), waits for the spool to drain, goes back to
  standby and **hands back**; the centre merges the upload without announcing anything again.
- **Health** (`health`): a retained `GatewayStatus` to the centre every `heartbeat_s`
  (`offline` as its last will); the centre raises "site offline" to the on-call role when
  it stops.

This module wires them (`local.LocalSite`: the site's services and database; `held`: the
alerts standby held back; `sync`: the upload) and runs the modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from nattillsyn import log, metrics
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.mqtt import MqttClient, Received, TlsFiles
from nattillsyn.protocol import (
    CentreStatus,
    GatewayMode,
    GatewaySyncAck,
    SiteSnapshot,
    TopicKind,
    Topics,
)
from nattillsyn.protocol.validate import Record, decode_message
from nattillsyn.settings import Settings, SettingsError
from nattillsyn.settings.gateway import GatewaySettings

from .bridge import Bridge
from .health import Health, offline_will
from .held import HeldAlerts
from .local import LocalSite
from .modes import ModeMachine
from .spool import Spool
from .sync import Uploader

logger = log.get(__name__)

MODE = Gauge("nattillsyn_gateway_mode", "0 normal (centre alerts), 1 fallback, 2 handback")
CENTRE_AGE = Gauge("nattillsyn_gateway_centre_silent_seconds", "Since the centre was last heard")
LINK = Gauge("nattillsyn_gateway_link_up", "1 while connected to the central broker")
TAKEOVERS = Counter("nattillsyn_gateway_takeovers_total", "Times the gateway took over", ["why"])
ANNOUNCED = Counter(
    "nattillsyn_gateway_announced_total", "Alerts the centre never published, announced on site"
)
HANDBACK = Histogram(
    "nattillsyn_gateway_handback_seconds",
    "From the centre being back to the gateway handing back (upload and drain)",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
MODE_VALUE = {GatewayMode.normal: 0, GatewayMode.fallback: 1, GatewayMode.handback: 2}
STEP_S = 0.2  # how often the modes are decided


def _spool(cfg: GatewaySettings, site: str) -> Spool:
    state_dir = cfg.state_dir or (
        Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        if os.environ.get("STATE_DIRECTORY")
        else None
    )
    if state_dir is None:
        logger.warning("no state_dir: the spool is in memory and lost on restart")
    return Spool(
        state_dir / f"gateway-{site}.sqlite" if state_dir else None,
        int(cfg.spool_max_mb * 1024 * 1024),
        cfg.spool_warn_ratio,
        cfg.spool_sync.upper(),
    )


def _clients(settings: Settings, session: int) -> tuple[MqttClient, MqttClient]:
    """(site broker, centre): persistent sessions, acknowledged by hand once on disk."""
    cfg, site = settings.gateway, settings.site
    cid = f"nattillsyn-gateway-{site}-{cfg.id}"
    session_opts = {
        "clean_start": False,
        "session_expiry_s": 7 * 86400,
        "manual_ack": True,
        "receive_maximum": 1000,
    }
    files = tuple(
        str(f) if f else None
        for f in (cfg.upstream_ca_file, cfg.upstream_cert_file, cfg.upstream_key_file)
    )
    local = MqttClient(settings.mqtt_url, f"{cid}-local", **session_opts)
    upstream = MqttClient(
        cfg.upstream_url,
        cid,
        **session_opts,
        max_inflight=max(100, cfg.inflight),
        will=offline_will(Topics(settings.topic_root), site, cfg.id, session),
        tls=TlsFiles(*files) if any(files) else None,
    )
    return local, upstream


class GatewayService:
    name = "gateway"

    def __init__(self, settings: Settings, clock: Clock = SYSTEM) -> None:
        cfg = settings.gateway
        if cfg.upstream_url is None:
            raise SettingsError("the gateway needs NATTILLSYN_GATEWAY__UPSTREAM_URL")
        if settings.mqtt_url is None:
            raise SettingsError("the gateway needs NATTILLSYN_MQTT_URL (the site's broker)")
        self.settings = settings
        self.cfg = cfg
        self.site = settings.site
        self.clock = clock
        self.topics = Topics(settings.topic_root)
        session = time.time_ns() // 1_000_000  # an identity, not a timer: wall time
        self.spool = _spool(cfg, self.site)
        self.local, self.upstream = _clients(settings, session)
        self.held = HeldAlerts(cfg.confirm_s, clock)
        self.machine = ModeMachine(cfg.takeover_after_s, cfg.handback_after_s, clock=clock)
        self.bridge = Bridge(
            self.topics,
            self.site,
            self.local,
            self.upstream,
            self.spool,
            inflight=cfg.inflight,
            on_site=self._on_site,
            on_down=self._on_down,
            up_actions=lambda: self.machine.mode is GatewayMode.normal,
            clock=clock,
        )
        self.site_services: LocalSite | None = None
        if cfg.local_alerting and settings.database_url:
            self.site_services = LocalSite(settings, self.held.held, clock)
        elif cfg.local_alerting:
            logger.warning("no database_url: the gateway bridges but cannot alert on site")
        site_services = self.site_services
        self.pool = site_services.pool if site_services else None
        self.ingest, self.alerting, self.api = (
            (site_services.ingest, site_services.alerting, site_services.api)
            if site_services
            else (None, None, None)
        )
        self.health = Health(
            self.site,
            cfg,
            self.topics,
            session,
            (self.local, self.upstream),
            self.spool,
            self.machine,
            site_services,
            clock,
        )
        self.uploader = Uploader(
            self.site,
            cfg,
            self.topics,
            self.upstream,
            self.pool,
            self.spool,
            self.held.confirmed,
            clock,
        )
        self._tasks: list[asyncio.Task] = []
        self._handback: asyncio.Task | None = None
        self._handed_over = False
        self._handback_began: float | None = None
        self._last_contact_seq = 0
        self.snapshot_digest: str | None = None
        self.events: list[dict] = []  # mode changes, for tests and benchmarks

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def mode(self) -> GatewayMode:
        return self.machine.mode

    async def start(self) -> None:
        metrics.serve(self.cfg.metrics_port)
        if self.site_services is not None:
            await self.site_services.open()
            self._last_contact_seq = int(self.spool.get("contact_seq") or 0)
        await self.local.start()
        await self.local.subscribe(*self.bridge.local_filters(), qos=1)
        self.upstream.on_connect(self._upstream_connected)
        self._tasks.append(asyncio.create_task(self._connect_upstream(), name="gw-connect"))
        if self.site_services is not None:
            await self.site_services.start()
        if self.mode is GatewayMode.normal and self.spool.get("mode") in ("fallback", "handback"):
            # Restarted while alerting on site: carry on until the centre is back.
            self.machine.switch(GatewayMode.fallback, None, "restart during fallback")
            await self._enter(GatewayMode.fallback)
        self.bridge.start()
        self._tasks += [
            asyncio.create_task(self._modes(), name="gw-modes"),
            asyncio.create_task(self.health.beat(), name="gw-heartbeat"),
            asyncio.create_task(self.uploader.every_while(self._centre_in_charge), name="gw-sync"),
        ]
        if self.site_services is not None:
            self._tasks.append(asyncio.create_task(self.site_services.prune(), name="gw-prune"))
        self._record("start", mode=self.mode.value)

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._handback] if self._handback else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.bridge.stop()
        if self.site_services is not None:
            await self.site_services.stop()
        await self.health.say_offline()
        with contextlib.suppress(Exception):
            await self.upstream.stop()
        await self.local.stop()
        if self.site_services is not None:
            await self.site_services.close()
        self.spool.close()

    async def _connect_upstream(self) -> None:
        await self.upstream.start_retrying(self.clock, link="centre")
        await self.upstream.subscribe(*self.bridge.upstream_filters(), qos=1)

    def _centre_in_charge(self) -> bool:
        return self.mode is GatewayMode.normal and self.machine.contact()

    def _upstream_connected(self) -> None:
        LINK.set(1)
        self._record("link_up")
        asyncio.get_running_loop().create_task(self.health.send())

    # -- what the centre says ------------------------------------------------------------------

    async def _on_site(self, msg: Received) -> None:
        rec = decode_message(self.topics, msg.topic, msg.payload, 4 << 20)
        if not isinstance(rec, Record) or rec.topic.site != self.site:
            return
        m = rec.msg
        if isinstance(m, CentreStatus):
            self.machine.beacon(self.clock.now())
            if self.mode is GatewayMode.normal and self.site_services is not None:
                # Everything up to here the centre has seen: the next takeover uploads after it.
                seq = await self.site_services.history_seq()
                if seq != self._last_contact_seq:
                    self._last_contact_seq = seq
                    self.spool.set("contact_seq", str(seq))
        elif isinstance(m, SiteSnapshot):
            await self._apply_snapshot(m)
        elif isinstance(m, GatewaySyncAck):
            self.uploader.answered(m)

    async def _apply_snapshot(self, snap: SiteSnapshot) -> None:
        if self.site_services is None:
            return
        try:
            changed = await self.site_services.apply_snapshot(snap)
        except Exception:
            logger.exception("site snapshot could not be applied; keeping the previous one")
            return
        self.snapshot_digest = snap.digest
        if changed:
            logger.info("site configuration replicated", site=self.site, digest=snap.digest[:12])

    def _on_down(self, kind: TopicKind, payload: bytes) -> None:
        if kind is TopicKind.alert:
            self.held.published(payload)

    # -- modes ----------------------------------------------------------------------------------

    async def _modes(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("gateway mode step failed")
            await self.clock.sleep(STEP_S)

    async def _step(self) -> None:
        now = self.clock.now()
        if not self.upstream.connected.is_set():
            LINK.set(0)
            self.machine.link_lost()
        seen = self.machine.centre_seen or self.machine.started
        CENTRE_AGE.set((now - seen).total_seconds())
        overdue = self.held.overdue()
        before = self.mode
        new = self.machine.decide(now, unconfirmed=overdue, handed_over=self._handed_over)
        if new is not None and new is not before:
            await self._enter(new, before)
        await self.health.storage_alert(now)

    async def _enter(self, mode: GatewayMode, before: GatewayMode | None = None) -> None:
        MODE.set(MODE_VALUE[mode])
        self.spool.set("mode", mode.value)
        logger.warning("gateway mode", mode=mode.value, reason=self.machine.reason, site=self.site)
        if mode is GatewayMode.fallback:
            await self._take_over(before)
        elif mode is GatewayMode.handback:
            self._handback_began = self.clock.monotonic()
            self._handback = asyncio.create_task(self._hand_back(), name="gw-handback")
            since = self.machine.contact_since
            self._record("handback", centre_heard_at=since.isoformat() if since else None)
        else:
            self._handed_over = False
            self._handback = None
            self.spool.set("fallback_started", "")
            took = None
            if self._handback_began is not None:
                took = self.clock.monotonic() - self._handback_began
                HANDBACK.observe(took)
            self._record("normal", handback_s=round(took, 3) if took is not None else None)
            self._handback_began = None
        await self.health.send()
        await self.health.tell_tablets()

    async def _take_over(self, before: GatewayMode | None) -> None:
        if self._handback is not None:
            self._handback.cancel()
            self._handback = None
        self._handed_over = False
        if before is GatewayMode.normal or not self.spool.get("fallback_started"):
            self.spool.set("fallback_started", self.clock.now().isoformat())
            self.spool.set("alerts_after", str(self._last_contact_seq))
            if self.site_services is not None:
                self.spool.set("takeover_seq", str(await self.site_services.history_seq()))
        TAKEOVERS.labels(self.machine.reason).inc()
        announced = 0
        if self.alerting is not None:
            announced = await self.alerting.takeover(self.held.take())
            ANNOUNCED.inc(announced)
        self._record("fallback", reason=self.machine.reason, announced=announced)

    async def _hand_back(self) -> None:
        """Upload what happened, let the spool drain, back to standby, upload the rest."""
        try:
            await self.uploader.after_fallback()
            while not await self.bridge.drained(timeout=5.0):
                pass
            if self.alerting is not None:
                self.alerting.hand_back()
            await self.uploader.after_fallback()
            self._handed_over = True
        except asyncio.CancelledError:
            if self.alerting is not None and self.mode is GatewayMode.fallback:
                self.alerting.standby = False
            raise

    def _record(self, what: str, **kw: object) -> None:
        self.events.append({"at": self.clock.now().isoformat(), "event": what, **kw})


__all__ = ["GatewayService"]
