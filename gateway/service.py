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
  is back it uploads what happened (`upload`), waits for the spool to drain, goes back to
  standby and **hands back**; the centre merges the upload without announcing anything again.
- **Health**: a retained `GatewayStatus` to the centre every `heartbeat_s` (`offline` as its
  last will); the centre raises "site offline" to the on-call role when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from nattillsyn import __version__, log, metrics
from nattillsyn.mqtt import MqttClient, MqttError, Received, TlsFiles, Will
from nattillsyn.protocol import (
    Alert,
    AlertPriority,
    CentreStatus,
    GatewayMode,
    GatewayStatus,
    GatewaySyncAck,
    SiteSnapshot,
    TopicKind,
    Topics,
    encode,
)
from nattillsyn.protocol.validate import Record, decode_message
from nattillsyn.settings import Settings, SettingsError

from .bridge import Bridge
from .modes import ModeMachine
from .spool import Spool

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
UPLOADED = Counter(
    "nattillsyn_gateway_uploaded_rows_total", "Rows uploaded to the centre", ["kind"]
)
MODE_VALUE = {GatewayMode.normal: 0, GatewayMode.fallback: 1, GatewayMode.handback: 2}
SYNC_EVERY_S = 30.0  # access log and visits go up this often in normal mode
PRUNE_EVERY_S = 3600.0
CONFIRMED_KEEP = 4096


def _now() -> datetime:
    return datetime.now(UTC)


class GatewayService:
    name = "gateway"

    def __init__(self, settings: Settings) -> None:
        cfg = settings.gateway
        if cfg.upstream_url is None:
            raise SettingsError("the gateway needs NATTILLSYN_GATEWAY__UPSTREAM_URL")
        if settings.mqtt_url is None:
            raise SettingsError("the gateway needs NATTILLSYN_MQTT_URL (the site's broker)")
        self.settings = settings
        self.cfg = cfg
        self.site = settings.site
        self.topics = Topics(settings.topic_root)
        self.session = time.time_ns() // 1_000_000
        self._seq = 0
        state_dir = cfg.state_dir or (
            Path(os.environ["STATE_DIRECTORY"].split(":")[0])
            if os.environ.get("STATE_DIRECTORY")
            else None
        )
        if state_dir is None:
            logger.warning("no state_dir: the spool is in memory and lost on restart")
        self.spool = Spool(
            state_dir / f"gateway-{self.site}.sqlite" if state_dir else None,
            int(cfg.spool_max_mb * 1024 * 1024),
            cfg.spool_warn_ratio,
            cfg.spool_sync.upper(),
        )
        cid = f"nattillsyn-gateway-{self.site}-{cfg.id}"
        will = GatewayStatus(
            site=self.site, gateway=cfg.id, session=self.session, seq=0, state="offline"
        )
        self.status_topic = self.topics.site(self.site, TopicKind.gateway)
        self.local = MqttClient(
            settings.mqtt_url,
            f"{cid}-local",
            clean_start=False,
            session_expiry_s=7 * 86400,
            manual_ack=True,
            receive_maximum=1000,
        )
        files = tuple(
            str(f) if f else None
            for f in (cfg.upstream_ca_file, cfg.upstream_cert_file, cfg.upstream_key_file)
        )
        self.upstream = MqttClient(
            cfg.upstream_url,
            cid,
            clean_start=False,
            session_expiry_s=7 * 86400,
            manual_ack=True,
            receive_maximum=1000,
            max_inflight=max(100, cfg.inflight),
            will=Will(self.status_topic, encode(will)),
            tls=TlsFiles(*files) if any(files) else None,
        )
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
        )
        self.machine = ModeMachine(cfg.takeover_after_s, cfg.handback_after_s, _now())
        self.alerting = self.ingest = self.api = None
        self.pool = None
        if cfg.local_alerting and settings.database_url:
            self._local_services()
        elif cfg.local_alerting:
            logger.warning("no database_url: the gateway bridges but cannot alert on site")
        # Alerts the local alerting raised while in standby, not yet seen from the centre.
        self.unannounced: dict[uuid.UUID, float] = {}  # id → deadline (monotonic)
        self.urgent: set[uuid.UUID] = set()  # high priority among them (confirm_s applies)
        self.confirmed: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._acks: dict[uuid.UUID, asyncio.Future[GatewaySyncAck]] = {}
        self._tasks: list[asyncio.Task] = []
        self._handback: asyncio.Task | None = None
        self._handed_over = False
        self._handback_began: float | None = None
        self._warn_since: datetime | None = None
        self._last_contact_seq = 0
        self.snapshot_digest: str | None = None
        self.events: list[dict] = []  # mode changes, for tests and benchmarks

    def _local_services(self) -> None:
        from nattillsyn.alerting.service import AlertingService
        from nattillsyn.db.pool import make_pool
        from nattillsyn.ingest.service import IngestService

        s = self.settings
        local = s.model_copy(
            update={
                "gateway": self.cfg.model_copy(update={"watch_sites": False}),
                "alerting": s.alerting.model_copy(
                    update={"client_id": f"nattillsyn-gateway-alerting-{self.site}"}
                ),
                "ingest": s.ingest.model_copy(
                    update={"client_id": f"nattillsyn-gateway-ingest-{self.site}"}
                ),
            }
        )
        self.local_settings = local
        self.pool = make_pool(s.database_url, s.database_schema, max_size=4)
        self.ingest = IngestService(local)
        self.alerting = AlertingService(local)
        self.alerting.standby = True
        self.alerting.on_held = self._held
        if self.cfg.tablet_page:
            from nattillsyn.api.app import ApiService

            self.api = ApiService(local)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def mode(self) -> GatewayMode:
        return self.machine.mode

    async def start(self) -> None:
        metrics.serve(self.cfg.metrics_port)
        if self.pool is not None:
            from nattillsyn.db.migrate import migrate

            await migrate(self.settings.database_url, self.settings.database_schema)
            await self.pool.open(wait=True)
            self._last_contact_seq = int(self.spool.get("contact_seq") or 0)
        await self.local.start()
        await self.local.subscribe(*self.bridge.local_filters(), qos=1)
        self.upstream.on_connect(self._upstream_connected)
        self._tasks.append(asyncio.create_task(self._connect_upstream(), name="gw-connect"))
        for svc in (self.ingest, self.alerting, self.api):
            if svc is not None:
                await svc.start()
        if self.mode is GatewayMode.normal and self.spool.get("mode") in ("fallback", "handback"):
            # Restarted while alerting on site: carry on until the centre is back.
            self.machine._to(GatewayMode.fallback, _now(), "restart during fallback")
            await self._enter(GatewayMode.fallback)
        self.bridge.start()
        self._tasks += [
            asyncio.create_task(self._modes(), name="gw-modes"),
            asyncio.create_task(self._heartbeat(), name="gw-heartbeat"),
            asyncio.create_task(self._sync_loop(), name="gw-sync"),
            asyncio.create_task(self._prune(), name="gw-prune"),
        ]
        self._record("start", mode=self.mode.value)

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._handback] if self._handback else [])]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.bridge.stop()
        for svc in (self.api, self.alerting, self.ingest):
            if svc is not None:
                with contextlib.suppress(Exception):
                    await svc.stop()
        if self.upstream.connected.is_set():
            # A clean stop says so (the will is for crashes and cut links).
            with contextlib.suppress(Exception):
                await self.upstream.publish(
                    self.status_topic, encode(self._status("offline")), retain=True, timeout=5
                )
        with contextlib.suppress(Exception):
            await self.upstream.stop()
        await self.local.stop()
        if self.pool is not None:
            await self.pool.close()
        self.spool.close()

    async def _connect_upstream(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.upstream.start(timeout=15)
                break
            except MqttError as exc:
                logger.warning("centre unreachable; retrying", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        await self.upstream.subscribe(*self.bridge.upstream_filters(), qos=1)

    def _upstream_connected(self) -> None:
        LINK.set(1)
        self._record("link_up")
        asyncio.get_running_loop().create_task(self._send_status())

    # -- what the centre says ------------------------------------------------------------------

    async def _on_site(self, msg: Received) -> None:
        rec = decode_message(self.topics, msg.topic, msg.payload, 4 << 20)
        if not isinstance(rec, Record) or rec.topic.site != self.site:
            return
        m = rec.msg
        if isinstance(m, CentreStatus):
            self.machine.beacon(_now())
            if self.mode is GatewayMode.normal and self.pool is not None:
                # Everything up to here the centre has seen: the next takeover uploads after it.
                from .upload import history_seq

                async with self.pool.connection() as conn:
                    seq = await history_seq(conn)
                if seq != self._last_contact_seq:
                    self._last_contact_seq = seq
                    self.spool.set("contact_seq", str(seq))
        elif isinstance(m, SiteSnapshot):
            await self._apply_snapshot(m)
        elif isinstance(m, GatewaySyncAck):
            fut = self._acks.pop(m.correlation_id, None)
            if fut is not None and not fut.done():
                fut.set_result(m)

    async def _apply_snapshot(self, snap: SiteSnapshot) -> None:
        if self.pool is None:
            return
        from .replica import apply_snapshot

        try:
            async with self.pool.connection() as conn:
                changed = await apply_snapshot(conn, snap)
        except Exception:
            logger.exception("site snapshot could not be applied; keeping the previous one")
            return
        self.snapshot_digest = snap.digest
        if changed:
            logger.info("site configuration replicated", site=self.site, digest=snap.digest[:12])

    def _on_down(self, kind: TopicKind, payload: bytes) -> None:
        if kind is not TopicKind.alert:
            return
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            aid = uuid.UUID(json.loads(payload)["alert_id"])
            self.confirmed[aid] = None
            while len(self.confirmed) > CONFIRMED_KEEP:
                self.confirmed.popitem(last=False)
            self.unannounced.pop(aid, None)
            self.urgent.discard(aid)

    def _held(self, alert: Alert) -> None:
        """The local alerting (standby) would have announced this."""
        if alert.notify != "new" or alert.alert_id in self.confirmed:
            return
        self.unannounced[alert.alert_id] = time.monotonic() + self.cfg.confirm_s
        if alert.priority is AlertPriority.high and not alert.practice:
            self.urgent.add(alert.alert_id)

    # -- modes ----------------------------------------------------------------------------------

    async def _modes(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("gateway mode step failed")
            await asyncio.sleep(0.2)

    async def _step(self) -> None:
        now = _now()
        mono = time.monotonic()
        if not self.upstream.connected.is_set():
            LINK.set(0)
            self.machine.link_lost()
        seen = self.machine.centre_seen or self.machine.started
        CENTRE_AGE.set((now - seen).total_seconds())
        overdue = any(self.unannounced.get(a, mono + 1) <= mono for a in self.urgent)
        # Forget what was held long ago and never confirmed (the centre may not raise it).
        for aid, deadline in list(self.unannounced.items()):
            if deadline + 600 < mono:
                self.unannounced.pop(aid, None)
                self.urgent.discard(aid)
        before = self.mode
        new = self.machine.decide(now, unconfirmed=overdue, handed_over=self._handed_over)
        if new is not None and new is not before:
            await self._enter(new, before)
        await self._storage_alert(now)

    async def _enter(self, mode: GatewayMode, before: GatewayMode | None = None) -> None:
        now = _now()
        MODE.set(MODE_VALUE[mode])
        self.spool.set("mode", mode.value)
        logger.warning("gateway mode", mode=mode.value, reason=self.machine.reason, site=self.site)
        if mode is GatewayMode.fallback:
            if self._handback is not None:
                self._handback.cancel()
                self._handback = None
            self._handed_over = False
            if before is GatewayMode.normal or not self.spool.get("fallback_started"):
                self.spool.set("fallback_started", now.isoformat())
                self.spool.set("alerts_after", str(self._last_contact_seq))
                if self.pool is not None:
                    from .upload import history_seq

                    async with self.pool.connection() as conn:
                        self.spool.set("takeover_seq", str(await history_seq(conn)))
            TAKEOVERS.labels(self.machine.reason).inc()
            announced = 0
            if self.alerting is not None:
                announce = set(self.unannounced)
                self.unannounced.clear()
                self.urgent.clear()
                announced = await self.alerting.takeover(announce)
                ANNOUNCED.inc(announced)
            self._record("fallback", reason=self.machine.reason, announced=announced)
        elif mode is GatewayMode.handback:
            self._handback_began = time.monotonic()
            self._handback = asyncio.create_task(self._hand_back(), name="gw-handback")
            since = self.machine.contact_since
            self._record("handback", centre_heard_at=since.isoformat() if since else None)
        else:
            self._handed_over = False
            self._handback = None
            self.spool.set("fallback_started", "")
            if self._handback_began is not None:
                HANDBACK.observe(time.monotonic() - self._handback_began)
            self._record(
                "normal",
                handback_s=(
                    round(time.monotonic() - self._handback_began, 3)
                    if self._handback_began
                    else None
                ),
            )
            self._handback_began = None
        await self._send_status()
        await self._tell_tablets()

    async def _hand_back(self) -> None:
        """Upload what happened, let the spool drain, back to standby, upload the rest."""
        try:
            await self._upload_until_done()
            while not await self.bridge.drained(timeout=5.0):
                pass
            if self.alerting is not None:
                self.alerting.hand_back()
            await self._upload_until_done()
            self._handed_over = True
        except asyncio.CancelledError:
            if self.alerting is not None and self.mode is GatewayMode.fallback:
                self.alerting.standby = False
            raise

    async def _upload_until_done(self) -> None:
        delay = 1.0
        while True:
            if await self._upload_fallback():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _upload_fallback(self) -> bool:
        started = self.spool.get("fallback_started") or ""
        since = datetime.fromisoformat(started) if started else _now() - timedelta(hours=1)
        return await self._sync(
            alerts_after=int(self.spool.get("alerts_after") or 0), rounds_since=since
        )

    async def _sync(self, *, alerts_after: int | None, rounds_since: datetime | None) -> bool:
        """One upload pass; True when the centre confirmed every batch."""
        if self.pool is None:
            return True
        from .upload import audit_seq, batches, collect, history_seq

        visits_since = self.spool.get("visits_since")
        async with self.pool.connection() as conn:
            # Where the next pass starts: read before collecting, so nothing falls between.
            top_hist = await history_seq(conn)
            top_audit = await audit_seq(conn)
            began = _now()
            rows = await collect(
                conn,
                alerts_after=alerts_after,
                rounds_since=rounds_since,
                visits_since=(
                    datetime.fromisoformat(visits_since)
                    if visits_since
                    else began - timedelta(days=1)
                ),
                audit_after=int(self.spool.get("audit_after") or 0),
            )
        # Rows written in standby for alerts the centre itself published are its own story.
        standby_until = int(self.spool.get("takeover_seq") or 0)
        rows["history"] = [
            h
            for h in rows["history"]
            if h.seq <= top_hist and not (h.seq <= standby_until and h.alert_id in self.confirmed)
        ]
        keep = {h.alert_id for h in rows["history"]}
        rows["alerts"] = [a for a in rows["alerts"] if a.alert.alert_id in keep]
        rows["audit"] = [a for a in rows["audit"] if a.seq <= top_audit]
        for msg in batches(self.site, self.cfg.id, rows, self.cfg.sync_batch):
            fut = asyncio.get_running_loop().create_future()
            self._acks[msg.correlation_id] = fut
            try:
                await self.upstream.publish(
                    self.topics.site(self.site, TopicKind.gateway_sync),
                    encode(msg),
                    qos=1,
                    timeout=self.cfg.sync_timeout_s,
                )
                ack = await asyncio.wait_for(fut, self.cfg.sync_timeout_s)
            except (TimeoutError, MqttError) as exc:
                logger.warning("upload not confirmed; will retry", error=str(exc) or "timeout")
                return False
            finally:
                self._acks.pop(msg.correlation_id, None)
            if not ack.ok:
                logger.error("centre refused an upload", error=ack.error)
                return False
            for kind in ("alerts", "history", "rounds", "visits", "audit"):
                UPLOADED.labels(kind).inc(len(getattr(msg, kind)))
        if alerts_after is not None:
            self.spool.set("alerts_after", str(max(alerts_after, top_hist)))
        self.spool.set("audit_after", str(top_audit))
        self.spool.set("visits_since", (began - timedelta(minutes=5)).isoformat())
        return True

    async def _sync_loop(self) -> None:
        """In normal mode, what staff did on the gateway's page (visits, access log) goes up."""
        while True:
            await asyncio.sleep(SYNC_EVERY_S)
            if self.mode is GatewayMode.normal and self.machine.contact(_now()):
                with contextlib.suppress(Exception):
                    await self._sync(alerts_after=None, rounds_since=None)

    # -- health -----------------------------------------------------------------------------------

    def _status(self, state: str = "online") -> GatewayStatus:
        self._seq += 1
        return GatewayStatus(
            site=self.site,
            gateway=self.cfg.id,
            session=self.session,
            seq=self._seq,
            state=state,  # type: ignore[arg-type]
            mode=self.mode,
            mode_since=self.machine.mode_since,
            interval_s=self.cfg.heartbeat_s,
            spool_messages=self.spool.count,
            spool_bytes=self.spool.bytes,
            spool_limit_bytes=self.spool.max_bytes,
            spool_warn_since=self._warn_since,
            dropped=sum(self.spool.dropped.values()),
            version=__version__[:32],
        )

    async def _send_status(self) -> None:
        payload = encode(self._status())
        with contextlib.suppress(Exception):
            self.local.publish_nowait(self.status_topic, payload, qos=1, retain=True)
        if self.upstream.connected.is_set():
            with contextlib.suppress(Exception):
                self.upstream.publish_nowait(self.status_topic, payload, qos=1, retain=True)

    async def _heartbeat(self) -> None:
        n = 0
        while True:
            await self._send_status()
            n += 1
            if self.mode is not GatewayMode.normal and n % 2 == 0:
                await self._tell_tablets()
            await asyncio.sleep(self.cfg.heartbeat_s)

    async def _tell_tablets(self) -> None:
        """The local tablet page shows whether the gateway alerts on site (live channel)."""
        if self.pool is None:
            return
        note = {
            "schema": self.settings.database_schema,
            "site": self.site,
            "type": "system",
            "alerting_ok": True,
            "gateway_mode": self.mode.value,
            "gateway_since": self.machine.mode_since.isoformat()
            if self.machine.mode_since
            else None,
        }
        with contextlib.suppress(Exception):
            async with self.pool.connection() as conn:
                await conn.execute("SELECT pg_notify('nattillsyn_live', %s)", (json.dumps(note),))

    async def _storage_alert(self, now: datetime) -> None:
        """Spool above its warning level: a system alert (on site, and at the centre from the
        status, under the same id)."""
        warn = self.spool.warning
        if warn and self._warn_since is None:
            self._warn_since = now
            logger.error("spool nearly full", fill=round(self.spool.fill_ratio, 3))
            await self._send_status()
        elif (
            not warn
            and self._warn_since is not None
            and self.spool.fill_ratio < (self.cfg.spool_warn_ratio * 0.9)
        ):
            self._warn_since = None
            if self.alerting is not None:
                from nattillsyn.alerting.site_watch import GATEWAY_STORAGE

                await self.alerting.resolve_site(self.site, GATEWAY_STORAGE, now)
            await self._send_status()
        if self._warn_since is not None and self.alerting is not None:
            from nattillsyn.alerting.site_watch import GATEWAY_STORAGE

            episode = f"storage:{self.cfg.id}:{self._warn_since.isoformat()}"
            await self.alerting.raise_site(
                self.site, GATEWAY_STORAGE, episode, self._warn_since, now
            )

    async def _prune(self) -> None:
        """Site telemetry is kept locally for `local_retention_h` (the centre keeps it all)."""
        while True:
            await asyncio.sleep(60)
            if self.pool is None:
                return
            try:
                async with self.pool.connection() as conn:
                    for table in ("events", "room_states", "heartbeats"):
                        await conn.execute(
                            f"DELETE FROM {table} WHERE ts < now() - make_interval(secs => %s)",
                            (self.cfg.local_retention_h * 3600,),
                        )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("local pruning failed", error=str(exc))
            await asyncio.sleep(PRUNE_EVERY_S)

    def _record(self, what: str, **kw: object) -> None:
        self.events.append({"at": _now().isoformat(), "event": what, **kw})


__all__ = ["GatewayService"]
