"""Alerting: room messages in, alerts for staff out; digital rounds at the agreed times.

Messages (events, states, heartbeats, availability) are folded into per-room facts
(`rules.RoomFacts`); after each message and on every tick the room's rules are
evaluated (`rules.evaluate`) against the resident's preset and overrides, only while
`monitoring_active` holds (the SQL function is checked again, in the same statement, when
an alert is stored). Alert state lives in the database; every change is published as an
Alert on `<root>/<site>/<room>/alert`. Staff actions arrive as AlertAction on
`…/alert/set`. Repeats, escalation and re-sounding follow `escalation.due`.

Alert ids are derived from the episode that raised them (`rules.alert_id`), so a care-home
gateway running this same service on its site's messages names its alerts alike. There it
runs in **standby** (`standby = True`): it stores and follows every alert but announces
nothing until the gateway takes over (`takeover`). At the centre it watches the gateways
(`gateways.SiteWatch`, setting `gateway.watch_sites`): "site offline" to the on-call role, a
site's rooms left to its gateway while it alerts, uploads merged, site snapshots published.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import psycopg
from prometheus_client import Counter, Gauge, Histogram
from psycopg import sql
from psycopg_pool import PoolTimeout

from nattillsyn import log, metrics
from nattillsyn.db.pool import make_pool
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import (
    Alert,
    AlertAction,
    AlertPriority,
    AlertStatus,
    Availability,
    CentreStatus,
    Event,
    EventPhase,
    EventType,
    GatewayStatus,
    GatewaySync,
    GatewaySyncAck,
    Heartbeat,
    RoomState,
    TopicKind,
    Topics,
    encode,
)
from nattillsyn.protocol.topics import SITE_ROOM
from nattillsyn.protocol.validate import Record, decode_message
from nattillsyn.settings import Settings

from . import alerts_db, care, escalation, gateways, lifecycle, rounds_db, rules
from .notifiers import LogNotifier, Notifier, PushSubscription, WebhookNotifier, WebPushNotifier
from .presets import RuleKind

logger = log.get(__name__)
T = TypeVar("T")
Key = tuple[str, str]
ALIVE_S = 5.0  # liveness row written this often
MAX_PAYLOAD = 1 << 20  # gateway uploads come in batches of up to ~1 MB

RAISED = Counter("nattillsyn_alerting_alerts_total", "Alerts raised", ["kind", "priority"])
GROUPED = Counter("nattillsyn_alerting_grouped_total", "Causes absorbed by an open alert", ["kind"])
ACTIONS = Counter("nattillsyn_alerting_actions_total", "Staff actions applied", ["action"])
NOTIFIED = Counter("nattillsyn_alerting_notified_total", "Alert notifications", ["reason"])
REJECTED = Counter("nattillsyn_alerting_rejected_total", "Messages ignored as invalid")
FIRING = Gauge("nattillsyn_alerting_firing", "Alerts firing (unacknowledged)")
OPEN = Gauge("nattillsyn_alerting_open", "Alerts not yet resolved")
STORE = Histogram(
    "nattillsyn_alerting_store_seconds",
    "Time to check monitoring and store a new alert",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
ROUNDS = Counter("nattillsyn_alerting_round_entries_total", "Round entries made", ["decision"])
LATENCY = Histogram(
    "nattillsyn_alerting_event_to_alert_seconds",
    "Source time of the triggering message to publication of its alert",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


@dataclass
class OpenAlert:
    alert: Alert
    episode: str | None
    last_notified_at: datetime | None


class AlertingService:
    name = "alerting"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cfg = settings.alerting
        self.schema = settings.database_schema
        self.topics = Topics(settings.topic_root)
        self.pool = make_pool(settings.database_url, settings.database_schema, max_size=6)
        self.mqtt = MqttClient(
            settings.mqtt_url, f"{self.cfg.client_id}-{settings.topic_root.replace('/', '-')}"
        )
        self.policy = escalation.Policy.from_settings(self.cfg)
        self.timing = rules.SystemTiming(
            offline_after_s=self.cfg.offline_after_s,
            camera_covered_delay_s=self.cfg.camera_covered_delay_s,
            too_dark_delay_s=self.cfg.too_dark_delay_s,
            camera_moved_delay_s=self.cfg.camera_moved_delay_s,
            backlog_threshold=self.cfg.backlog_threshold,
            backlog_delay_s=self.cfg.backlog_delay_s,
            paused_delay_s=self.cfg.paused_delay_s,
        )
        self.started_at = datetime.now(UTC)
        self.facts: dict[Key, rules.RoomFacts] = {}
        self.rooms: dict[Key, care.RoomCare] = {}
        self.monitored_since: dict[Key, datetime | None] = {}
        self.open: dict[str, OpenAlert] = {}  # alert id → state
        self.by_room: dict[Key, set[str]] = {}  # open alert ids per room
        # When each room must be evaluated again without a new message (a delay running
        # out, a heartbeat going stale): the tick looks only at rooms that are due.
        self.next_check: dict[Key, datetime] = {}
        self.handled: dict[Key, set[str]] = {}  # episodes that raised or were absorbed
        self.silences: list[care.Silence] = []
        self.visits: set[Key] = set()
        self.notifiers: dict[str, Notifier] = {}
        self.webpush: WebPushNotifier | None = None
        self._locks: dict[Key, asyncio.Lock] = {}
        self._refresh = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._pending: set[asyncio.Task] = set()
        self._listener: psycopg.AsyncConnection | None = None
        # On a gateway: store and follow, announce nothing (`on_held` sees what would go out).
        self.standby = False
        self.on_held: Callable[[Alert], None] | None = None
        gw = settings.gateway
        self.sites = gateways.SiteWatch(gw.site_offline_after_s) if gw.watch_sites else None
        self.site_policy = escalation.Policy(
            self.cfg.repeat_s,
            self.cfg.resound_s,
            (escalation.Step(0, ("unit", *gw.site_offline_targets)),),
        )
        self._snapshots: dict[str, tuple[str, float]] = {}  # site → (digest, published at)
        self._held_sites: set[str] = set()  # sites whose rooms their gateway has now

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        await self.pool.open(wait=True)
        self._setup_notifiers()
        await self._reload_care(initial=True)
        for stored in await self._db(alerts_db.open_alerts):
            self._add_open(OpenAlert(stored.alert, stored.episode, stored.last_notified_at))
            if stored.episode:
                self.handled.setdefault((stored.alert.site, stored.alert.room), set()).add(
                    stored.episode
                )
        for key, (device, hb) in (await self._db(care.load_heartbeats)).items():
            f = self._facts(key)
            f.last_heartbeat, f.device = hb, device
        await self.mqtt.start()
        filters = [
            self.topics.subscription(TopicKind.event),
            self.topics.subscription(TopicKind.state),
            self.topics.subscription(TopicKind.heartbeat),
            self.topics.subscription(TopicKind.availability),
            self.topics.subscription(TopicKind.alert_set),
        ]
        if self.sites is not None:
            filters += [
                self.topics.subscription(TopicKind.gateway),
                self.topics.subscription(TopicKind.gateway_sync),
            ]
        await self.mqtt.subscribe(*filters)
        metrics.serve(self.cfg.metrics_port)
        self._tasks = [
            asyncio.create_task(self._consume(), name="alerting-consume"),
            asyncio.create_task(self._ticker(), name="alerting-tick"),
            asyncio.create_task(self._care_loop(), name="alerting-care"),
            asyncio.create_task(self._listen(), name="alerting-listen"),
            asyncio.create_task(self._rounds(), name="alerting-rounds"),
            asyncio.create_task(self._alive(), name="alerting-alive"),
        ]

    async def stop(self) -> None:
        for t in (*self._tasks, *self._pending):
            t.cancel()
        for t in (*self._tasks, *self._pending):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for n in self.notifiers.values():
            with contextlib.suppress(Exception):
                await n.close()
        await self.mqtt.stop()
        await self.pool.close()

    def _setup_notifiers(self) -> None:
        names = {
            t.split(":", 1)[1]
            for s in self.policy.steps
            for t in s.targets
            if t.startswith("notifier:")
        }
        for name in names:
            if name == "webhook" and self.cfg.webhook_url:
                secret = (
                    self.cfg.webhook_secret.get_secret_value() if self.cfg.webhook_secret else None
                )
                self.notifiers[name] = WebhookNotifier(
                    self.cfg.webhook_url, secret, self.cfg.webhook_timeout_s
                )
            else:
                self.notifiers[name] = LogNotifier(name)
        if self.cfg.vapid_private_key:
            self.webpush = WebPushNotifier(
                self.cfg.vapid_private_key.get_secret_value(), self.cfg.vapid_subject
            )

    # -- loops -------------------------------------------------------------------

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

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.tick_s)
            try:
                await self.tick(datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("tick failed")

    async def tick(self, now: datetime) -> None:
        """Delays, system conditions, auto-resolve, then repeats/escalation/re-sound."""
        if self.sites is not None:
            await self._check_sites(now)
        due = [k for k, t in self.next_check.items() if t <= now]
        for n, key in enumerate(due):
            await self._evaluate(key, now)
            if n % 50 == 49:
                await asyncio.sleep(0)  # let messages through between slices
        for oa in list(self.open.values()):
            await self._schedule(oa, now)
        FIRING.set(sum(1 for o in self.open.values() if o.alert.status is AlertStatus.firing))
        OPEN.set(len(self.open))

    async def _care_loop(self) -> None:
        while True:
            wait = self.cfg.care_refresh_s
            if self.sites is not None:
                wait = min(wait, self.settings.gateway.snapshot_interval_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):  # wait_for (3.11) can swallow a cancel
                    await self._refresh.wait()
            self._refresh.clear()
            try:
                await self._reload_care()
                if self.sites is not None:
                    await self._publish_snapshots()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("care model reload failed")

    async def _listen(self) -> None:
        """LISTEN for care-model and silence changes: a pause stops alerting at once."""
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.settings.database_url, autocommit=True
                ) as conn:
                    await conn.execute(
                        sql.SQL("LISTEN {}").format(sql.Identifier("nattillsyn_care"))
                    )
                    delay = 0.5
                    self._refresh.set()  # anything missed while not listening
                    async for note in conn.notifies():
                        if note.payload.split(".", 1)[0] == self.schema:
                            self._refresh.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("care listener lost; retrying", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def _alive(self) -> None:
        """Liveness for the tablets: the api warns staff when this stops (see LiveHub)."""
        instance = f"{socket.gethostname()}:{os.getpid()}"
        while True:
            try:
                async with self.pool.connection() as conn:
                    await conn.execute(
                        """INSERT INTO service_heartbeats (service, instance, at)
                           VALUES ('alerting', %s, now())
                           ON CONFLICT (service) DO UPDATE SET instance = EXCLUDED.instance,
                               at = EXCLUDED.at""",
                        (instance,),
                    )
                if self.sites is not None:
                    await self._beacon()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("liveness write failed", error=str(exc))
            await asyncio.sleep(ALIVE_S)

    async def _rounds(self) -> None:
        while True:
            try:
                made = await self._db(
                    lambda conn: rounds_db.produce_due(
                        conn,
                        self.schema,
                        datetime.now(UTC),
                        self.cfg.round_window_s,
                        self.cfg.round_grace_s,
                    )
                )
                for entry in made:
                    ROUNDS.labels(entry["decision"]).inc()
                    logger.info(
                        "round entry",
                        site=entry["site"],
                        room=entry["room"],
                        decision=entry["decision"],
                        reason=entry["reason"],
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("rounds failed")
            await asyncio.sleep(self.cfg.round_check_s)

    async def _reload_care(self, initial: bool = False) -> None:
        rooms = await self._db(care.load_rooms)
        now = datetime.now(UTC)
        for key, rc in rooms.items():
            before = self.rooms.get(key)
            if rc.monitored and (before is None or not before.monitored):
                # Delays count from when monitoring began; at start-up: unknown, long ago.
                self.monitored_since[key] = None if initial else now
            if before != rc:
                self.next_check[key] = now  # rules or monitoring changed: look again
        self.rooms = rooms
        self.silences = await self._db(care.load_silences)
        self.visits = await self._db(care.load_open_visits)

    # -- messages -----------------------------------------------------------------

    def _facts(self, key: Key) -> rules.RoomFacts:
        f = self.facts.get(key)
        if f is None:
            f = self.facts[key] = rules.RoomFacts(key[0], key[1], watched_since=self.started_at)
            self.next_check.setdefault(key, self.started_at)
        return f

    def _add_open(self, oa: OpenAlert) -> None:
        aid = str(oa.alert.alert_id)
        self.open[aid] = oa
        self.by_room.setdefault((oa.alert.site, oa.alert.room), set()).add(aid)

    def _drop_open(self, alert: Alert) -> None:
        aid = str(alert.alert_id)
        self.open.pop(aid, None)
        self.by_room.get((alert.site, alert.room), set()).discard(aid)

    def _open_in(self, key: Key) -> list[OpenAlert]:
        return [self.open[a] for a in self.by_room.get(key, ()) if a in self.open]

    async def _handle(self, rec: Record) -> None:
        msg = rec.msg
        if isinstance(msg, GatewayStatus):
            await self._gateway_status(msg)
            return
        if isinstance(msg, GatewaySync):
            await self._import(msg)
            return
        if isinstance(msg, AlertAction):
            if msg.action == "raise_practice":
                await self._practice(msg, rec.topic.site, rec.topic.room)
            else:
                await self._act(msg)
            return
        if not isinstance(msg, RoomState | Event | Heartbeat | Availability):
            return
        if isinstance(msg, Event) and msg.type is EventType.motion:
            return  # motion alone never alerts; it is the bulk of the traffic
        key = (msg.site, msg.room)
        if not self._facts(key).apply(msg, datetime.now(UTC)):
            return
        trigger = msg.ts if isinstance(msg, Event | RoomState) else None
        if isinstance(msg, Event) and msg.phase is not EventPhase.new:
            trigger = None
        await self._evaluate(key, datetime.now(UTC), trigger)

    def suppressed(self, site: str, now: datetime) -> bool:
        """The site's gateway alerts for its rooms (or is out of reach): the centre holds back."""
        return self.sites is not None and self.sites.suppressed(site, now)

    async def _evaluate(self, key: Key, now: datetime, trigger_ts: datetime | None = None) -> None:
        if self.suppressed(key[0], now):
            # Facts keep folding; the rooms are evaluated again when the site is handed back.
            self.next_check[key] = now + timedelta(seconds=60)
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            facts = self.facts.get(key)
            if facts is None:
                facts = self._facts(key)
            rc = self.rooms.get(key)
            monitored = rc is not None and rc.monitored
            tz = rc.tz if rc else care.zone("Europe/Stockholm")
            ctx = rules.Context(now, monitored, self.monitored_since.get(key), tz, self.timing)
            dues = rules.evaluate(facts, rc.rules if rc else {}, ctx)
            # Auto-resolve what no longer holds.
            holding = {c.kind for c in rules.conditions(facts, now, self.timing)}
            for oa in self._open_in(key):
                if oa.alert.practice:
                    continue
                try:
                    kind = RuleKind(oa.alert.kind)
                except ValueError:
                    continue
                acked = oa.alert.status is AlertStatus.acknowledged
                if rules.cleared(kind, acked, holding):
                    await self._resolve(oa, now, lifecycle.SYSTEM, None)
            handled = self.handled.setdefault(key, set())
            for due in dues:
                if not due.ready(now) or due.episode in handled:
                    continue
                open_here = {
                    RuleKind(o.alert.kind): o
                    for o in self._open_in(key)
                    if not o.alert.practice and o.alert.kind in RuleKind.__members__
                }
                absorber = rules.inhibitor(due.kind, frozenset(open_here))
                handled.add(due.episode)
                if absorber is not None:
                    oa = open_here[absorber]
                    count = await self._db(
                        lambda c, a=oa: alerts_db.occurred(c, a.alert.alert_id, now)
                    )
                    oa.alert = oa.alert.model_copy(update={"occurrences": count or 1})
                    GROUPED.labels(due.kind.value).inc()
                    continue
                raised = await self._raise(key, rc, due, now)
                if raised is None:
                    handled.discard(due.episode)  # not monitored after all: may alert later
                if raised and trigger_ts is not None:
                    LATENCY.observe(max(0.0, (datetime.now(UTC) - trigger_ts).total_seconds()))
            self.next_check[key] = self._next_check(facts, dues, handled, now)

    def _next_check(
        self, facts: rules.RoomFacts, dues: list[rules.Due], handled: set[str], now: datetime
    ) -> datetime:
        times = [d.fire_at for d in dues if d.fire_at > now and d.episode not in handled]
        if facts.offline_since is None:
            silent_at = (facts.last_heartbeat or facts.watched_since) + timedelta(
                seconds=self.timing.offline_after_s
            )
            if silent_at > now:
                times.append(silent_at)
        return min(times) if times else now + timedelta(seconds=60)

    # -- raising, notifying ------------------------------------------------------------

    async def _raise(
        self, key: Key, rc: care.RoomCare | None, due: rules.Due, now: datetime
    ) -> bool | None:
        site, room = key
        name = rc.name if rc else room
        muted = care.silenced(self.silences, site, room, due.kind.value, now)
        alert = Alert(
            alert_id=rules.alert_id(site, room, due.kind, due.episode),
            site=site,
            room=room,
            device=due.device,
            kind=due.kind.value,
            priority=due.priority,
            status=AlertStatus.firing,
            title=rules.title(due.kind, name),
            started=due.fire_at if due.fire_at <= now else now,
            source_event=_event_id(due.episode),
            silenced=muted,
        )
        return await self._store_and_announce(alert, due.episode, rc, now, require_monitoring=True)

    async def _store_and_announce(
        self,
        alert: Alert,
        episode: str | None,
        rc: care.RoomCare | None,
        now: datetime,
        require_monitoring: bool,
    ) -> bool | None:
        """True: raised; False: already raised (redelivery); None: the room is not monitored."""
        tracking = self._tracking(OpenAlert(alert, episode, None), now)
        policy = self._policy(alert)
        note = escalation.due(tracking, policy, now)
        if note is not None:
            alert = alert.model_copy(
                update={
                    "escalation_step": note.step,
                    "targets": escalation.targets_reached(policy, note.step, alert.practice),
                }
            )

        async def write(conn):
            return await alerts_db.insert(
                conn,
                alert,
                episode=episode,
                resident_id=rc.resident_id if rc else None,
                notified_at=now if note else None,
                require_monitoring_at=now if require_monitoring else None,
            )

        t0 = time.perf_counter()
        try:
            stored = await self._db(write)
        except alerts_db.NotMonitored:
            self._refresh.set()  # paused or withdrawn since the last refresh: nothing
            return None
        STORE.observe(time.perf_counter() - t0)
        if stored is None:
            return False  # redelivery of an event that already raised its alert
        oa = OpenAlert(stored, episode, now if note else None)
        self._add_open(oa)
        RAISED.labels(stored.kind, stored.priority.value).inc()
        logger.info(
            "alert raised",
            kind=stored.kind,
            site=stored.site,
            room=stored.room,
            alert=str(stored.alert_id),
            practice=stored.practice,
            silenced=stored.silenced,
        )
        sound = bool(note and note.sound)
        await self._publish(stored.model_copy(update={"sound": sound, "notify": "new"}))
        if note is not None:
            NOTIFIED.labels("new").inc()
            await self._page(stored, note.new_targets, sound)
        return True

    def _tracking(self, oa: OpenAlert, now: datetime) -> escalation.Tracking:
        a = oa.alert
        return escalation.Tracking(
            status=a.status,
            priority=a.priority,
            raised_at=a.started,
            acknowledged_at=a.acknowledged_at,
            last_notified_at=oa.last_notified_at,
            step=a.escalation_step,
            silenced=a.silenced,
            practice=a.practice,
            visit_open=(a.site, a.room) in self.visits,
        )

    def _policy(self, alert: Alert) -> escalation.Policy:
        return self.site_policy if alert.kind == gateways.SITE_OFFLINE else self.policy

    async def _schedule(self, oa: OpenAlert, now: datetime) -> None:
        if str(oa.alert.alert_id) not in self.open:
            return
        if oa.alert.room != SITE_ROOM and self.suppressed(oa.alert.site, now):
            return  # the gateway repeats and escalates on site; "site offline" covers it here
        if (
            not oa.alert.silenced
            and not oa.alert.practice
            and care.silenced(self.silences, oa.alert.site, oa.alert.room, oa.alert.kind, now)
        ):
            # A silence made while it was open: record it and tell the tablets (no sound).
            muted = oa.alert.model_copy(update={"silenced": True})
            at = oa.last_notified_at or now
            oa.alert = await self._db(lambda c: alerts_db.notified(c, muted, at, "silenced"))
            await self._publish(lifecycle.republished(oa.alert))
        policy = self._policy(oa.alert)
        note = escalation.due(self._tracking(oa, now), policy, now)
        if note is None:
            return
        alert = oa.alert.model_copy(
            update={
                "escalation_step": note.step,
                "targets": escalation.targets_reached(policy, note.step, oa.alert.practice),
            }
        )
        history = f"escalation step {note.step}" if note.reason == "escalate" else None
        alert = await self._db(lambda c: alerts_db.notified(c, alert, now, history))
        oa.alert, oa.last_notified_at = alert, now
        NOTIFIED.labels(note.reason).inc()
        await self._publish(lifecycle.republished(alert, sound=note.sound, notify=note.reason))
        await self._page(alert, note.new_targets, note.sound)

    async def _page(self, alert: Alert, new_targets: tuple[str, ...], sound: bool) -> None:
        """External notifiers for targets reached now; web push for the tablets on each sound."""
        if self.standby:
            return
        for target in new_targets:
            if not target.startswith("notifier:") or alert.practice:
                continue
            notifier = self.notifiers.get(target.split(":", 1)[1])
            if notifier is None:
                continue
            self._background(self._send(notifier, alert, target))
        if sound and self.webpush is not None:
            self._background(self._push(alert))

    def _background(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._pending.add(task)  # keep a reference until done
        task.add_done_callback(self._pending.discard)

    async def _send(self, notifier: Notifier, alert: Alert, target: str) -> None:
        try:
            await notifier.send(alert, target)
            note = f"notified {target}"
        except Exception as exc:
            logger.error("notifier failed", notifier=notifier.name, error=str(exc))
            note = f"notify failed {target}: {exc}"[:200]
        with contextlib.suppress(Exception):
            await self._db(lambda c: alerts_db.history_note(c, alert, note))

    async def _push(self, alert: Alert) -> None:
        assert self.webpush is not None
        groups = [t.split(":", 1)[1] for t in alert.targets if t.startswith("group:")]
        try:
            subs = await self._db(lambda c: _push_subscriptions(c, alert.site, groups))
            if subs:
                gone = await self.webpush.push(alert, subs)
                if gone:
                    await self._db(lambda c: _forget_subscriptions(c, gone))
        except Exception:
            logger.exception("web push failed")

    # -- staff actions ---------------------------------------------------------------

    async def _act(self, action: AlertAction) -> None:
        alert = await self._db(lambda conn: alerts_db.get(conn, action.alert_id))
        if alert is None:
            logger.warning("action on unknown alert", alert=str(action.alert_id))
            return
        oa = self.open.get(str(alert.alert_id))
        if oa is not None:  # the in-memory copy knows the schedule fields
            alert = oa.alert.model_copy(update={"rev": alert.rev})
        try:
            if action.action == "acknowledge":
                t = lifecycle.acknowledge(alert, action.by, action.ts)
            else:
                t = lifecycle.resolve(alert, action.ts, action.by, action.outcome)
        except lifecycle.InvalidTransition as exc:
            logger.info("action refused", alert=str(action.alert_id), reason=str(exc))
            await self._publish(lifecycle.republished(alert))
            return
        if not t.changed:
            await self._publish(lifecycle.republished(alert))
            return
        new = await self._db(lambda conn: alerts_db.update(conn, t.alert, action.by))
        ACTIONS.labels(action.action).inc()
        if new.status is AlertStatus.resolved:
            self._drop_open(new)
        elif oa is not None:
            oa.alert = new
        else:
            self._add_open(OpenAlert(new, None, None))
        await self._publish(new)

    async def _practice(self, action: AlertAction, site: str, room: str) -> None:
        rc = self.rooms.get((site, room))
        kind = action.kind or "possible_fall"
        alert = Alert(
            alert_id=action.alert_id,
            site=site,
            room=room,
            kind=kind,
            priority=action.priority or AlertPriority.high,
            status=AlertStatus.firing,
            title="ÖVNING – " + rules.title(kind, rc.name if rc else room),
            started=datetime.now(UTC),
            practice=True,
        )
        await self._store_and_announce(alert, None, rc, datetime.now(UTC), require_monitoring=False)

    async def _resolve(self, oa: OpenAlert, now: datetime, by: str, outcome: str | None) -> None:
        t = lifecycle.resolve(oa.alert, now, by, outcome)
        if not t.changed:
            return
        new = await self._db(lambda conn: alerts_db.update(conn, t.alert, by, "cause cleared"))
        self._drop_open(new)
        await self._publish(new)

    # -- care-home gateways (centre) ---------------------------------------------------

    async def _gateway_status(self, msg: GatewayStatus) -> None:
        if self.sites is None:
            return
        now = datetime.now(UTC)
        if self.sites.apply(msg, now):
            logger.info("gateway heard", site=msg.site, gateway=msg.gateway, mode=msg.mode.value)
            self._refresh.set()  # its snapshot goes out with the next reload
        await self._check_sites(now)

    async def _check_sites(self, now: datetime) -> None:
        """Site offline / gateway storage alerts; rooms of a handed-back site evaluated at once."""
        assert self.sites is not None
        conds = self.sites.conditions(now)
        holding = {(c.site, c.kind) for c in conds}
        for oa in list(self.open.values()):
            a = oa.alert
            if a.room == SITE_ROOM and not a.practice and (a.site, a.kind) not in holding:
                await self._resolve(oa, now, lifecycle.SYSTEM, None)
        for c in conds:
            await self.raise_site(c.site, c.kind, c.episode, c.since, now)
        for site in list(self.sites.sites):
            held = self.sites.suppressed(site, now)
            if site in self._held_sites and not held:
                logger.info("site handed back by its gateway", site=site)
                for key in {k for k in (*self.facts, *self.rooms) if k[0] == site}:
                    self.next_check[key] = now
            (self._held_sites.add if held else self._held_sites.discard)(site)

    async def raise_site(
        self, site: str, kind: str, episode: str, since: datetime, now: datetime
    ) -> bool:
        """A site-level alert (room `_site`): site offline, gateway storage nearly full.
        One open alert per site and kind; the id follows the episode, as for rooms."""
        key = (site, SITE_ROOM)
        handled = self.handled.setdefault(key, set())
        if episode in handled:
            return False
        handled.add(episode)
        if any(o.alert.kind == kind for o in self._open_in(key)):
            return False
        name = await self._db(lambda conn: gateways.site_name(conn, site))
        alert = Alert(
            alert_id=rules.alert_id(site, SITE_ROOM, kind, episode),
            site=site,
            room=SITE_ROOM,
            kind=kind,
            priority=gateways.SITE_PRIORITY.get(kind, AlertPriority.medium),
            status=AlertStatus.firing,
            title=gateways.site_title(kind, name),
            started=min(since, now),
        )
        raised = await self._store_and_announce(alert, episode, None, now, require_monitoring=False)
        return bool(raised)

    async def resolve_site(self, site: str, kind: str, now: datetime) -> None:
        """The system resolves the open site-level alert of this kind (its cause is gone)."""
        for oa in self._open_in((site, SITE_ROOM)):
            if oa.alert.kind == kind and not oa.alert.practice:
                await self._resolve(oa, now, lifecycle.SYSTEM, None)

    async def _beacon(self) -> None:
        """Tell each gateway the centre is alive and in charge (QoS 0: never queued, so a
        stale one cannot arrive after an outage)."""
        assert self.sites is not None
        now = datetime.now(UTC)
        for site in list(self.sites.sites):
            msg = CentreStatus(site=site, interval_s=ALIVE_S, suppressed=self.suppressed(site, now))
            self.mqtt.publish_nowait(self.topics.site(site, TopicKind.centre), encode(msg), qos=0)

    async def _publish_snapshots(self) -> None:
        assert self.sites is not None
        every = self.settings.gateway.snapshot_interval_s
        for site in list(self.sites.sites):
            snap = await self._db(lambda conn, s=site: gateways.build_snapshot(conn, s))
            if snap is None:
                continue
            last = self._snapshots.get(site)
            if last and last[0] == snap.digest and time.monotonic() - last[1] < every:
                continue
            topic = self.topics.site(site, TopicKind.gateway_config)
            await self.mqtt.publish(topic, encode(snap), qos=1, retain=True, timeout=None)
            self._snapshots[site] = (snap.digest, time.monotonic())

    async def _import(self, msg: GatewaySync) -> None:
        """Merge an upload, take over the schedules of what is still open, answer."""
        if self.sites is None:
            return
        try:
            result = await self._db(lambda conn: gateways.import_sync(conn, msg))
        except Exception as exc:
            logger.exception("gateway upload refused", site=msg.site, gateway=msg.gateway)
            ack = GatewaySyncAck(
                site=msg.site, correlation_id=msg.correlation_id, ok=False, error=str(exc)[:500]
            )
        else:
            for aid in dict.fromkeys(result.alerts):
                stored = await self._db(lambda conn, a=aid: alerts_db.get_stored(conn, a))
                if stored is None:
                    continue
                alert = stored.alert
                if stored.episode:
                    self.handled.setdefault((alert.site, alert.room), set()).add(stored.episode)
                if alert.status is AlertStatus.resolved:
                    self._drop_open(alert)
                else:
                    self._add_open(OpenAlert(alert, stored.episode, stored.last_notified_at))
                await self._publish(lifecycle.republished(alert))  # its state, never a sound
            logger.info(
                "gateway upload merged", site=msg.site, gateway=msg.gateway, stored=result.stored
            )
            ack = GatewaySyncAck(
                site=msg.site, correlation_id=msg.correlation_id, ok=True, stored=result.stored
            )
        topic = self.topics.site(msg.site, TopicKind.gateway_sync_ack)
        await self.mqtt.publish(topic, encode(ack), qos=1, timeout=None)

    # -- standby on a gateway --------------------------------------------------------------

    async def takeover(self, announce: set[uuid.UUID]) -> int:
        """Stop holding back: announce the open alerts in `announce` as new (they were never
        published by the centre) and republish the others silently. Returns how many sounded."""
        self.standby = False
        n = 0
        for oa in list(self.open.values()):
            a = oa.alert
            if a.alert_id in announce and a.status is AlertStatus.firing:
                sound = not a.silenced and a.priority is not AlertPriority.info
                await self._publish(lifecycle.republished(a, sound=sound, notify="new"))
                await self._page(a, tuple(a.targets), sound)
                n += 1
            else:
                await self._publish(lifecycle.republished(a))
        return n

    def hand_back(self) -> None:
        """Back to standby: the centre announces again."""
        self.standby = True

    # -- I/O helpers -----------------------------------------------------------------

    async def _publish(self, alert: Alert) -> None:
        if self.standby:
            if self.on_held is not None:
                self.on_held(alert)
            return
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


def _event_id(episode: str) -> uuid.UUID | None:
    if episode.startswith("event:"):
        with contextlib.suppress(ValueError):
            return uuid.UUID(episode.removeprefix("event:"))
    return None


async def _push_subscriptions(
    conn: psycopg.AsyncConnection, site: str, groups: list[str]
) -> list[PushSubscription]:
    cur = await conn.execute(
        """SELECT p.endpoint, p.p256dh, p.auth FROM push_subscriptions p
           LEFT JOIN tablets t ON t.id = p.tablet_id
           WHERE p.failed_at IS NULL AND (t.revoked_at IS NULL)
             AND (p.site_id = %s OR (t.groups && %s::text[]))""",
        (site, groups),
    )
    return [PushSubscription(*r) for r in await cur.fetchall()]


async def _forget_subscriptions(conn: psycopg.AsyncConnection, endpoints: list[str]) -> None:
    await conn.execute(
        "UPDATE push_subscriptions SET failed_at = now() WHERE endpoint = ANY(%s)", (endpoints,)
    )


__all__ = ["AlertingService"]
