"""Alerts out to staff: store a new alert and announce it, then repeat, escalate and re-sound
it (`escalation.due`), page external notifiers and web push, and resolve it.

On a care-home gateway the pager runs in **standby**: it stores and follows every alert but
publishes nothing (`on_held` sees what would go out) until the gateway takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Alert, AlertPriority, AlertStatus, TopicKind, Topics, encode
from nattillsyn.protocol.topics import SITE_ROOM
from nattillsyn.service import cancel_all
from nattillsyn.settings import Settings

from . import alerts_db, care, escalation, gateway_sync, lifecycle, notifiers, rules, site_watch
from .database import Database
from .notifiers import LogNotifier, Notifier, WebhookNotifier, WebPushNotifier
from .open_alerts import OpenAlert, OpenAlerts

logger = log.get(__name__)

RAISED = Counter("nattillsyn_alerting_alerts_total", "Alerts raised", ["kind", "priority"])
NOTIFIED = Counter("nattillsyn_alerting_notified_total", "Alert notifications", ["reason"])
FIRING = Gauge("nattillsyn_alerting_firing", "Alerts firing (unacknowledged)")
OPEN = Gauge("nattillsyn_alerting_open", "Alerts not yet resolved")
STORE = Histogram(
    "nattillsyn_alerting_store_seconds",
    "Time to check monitoring and store a new alert",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)


# What escalation needs of an alert under the same name.
_SAME_IN_TRACKING = ("status", "priority", "acknowledged_at", "silenced", "practice")


def _notifiers(settings: Settings, policy: escalation.Policy) -> dict[str, Notifier]:
    """One notifier per `notifier:NAME` target of the escalation steps."""
    cfg = settings.alerting
    names = {
        t.split(":", 1)[1] for s in policy.steps for t in s.targets if t.startswith("notifier:")
    }
    out: dict[str, Notifier] = {}
    for name in names:
        if name == "webhook" and cfg.webhook_url:
            secret = cfg.webhook_secret.get_secret_value() if cfg.webhook_secret else None
            out[name] = WebhookNotifier(cfg.webhook_url, secret, cfg.webhook_timeout_s)
        else:
            out[name] = LogNotifier(name)
    return out


class Pager:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        mqtt: MqttClient,
        care_model: care.CareModel,
        book: OpenAlerts,
        sites: site_watch.SiteWatch | None,
        not_monitored: Callable[[], None],
        clock: Clock = SYSTEM,
    ) -> None:
        cfg = settings.alerting
        self.db, self.mqtt, self.care, self.book = db, mqtt, care_model, book
        self.topics = Topics(settings.topic_root)
        self.sites = sites
        self.not_monitored = not_monitored  # the care model is out of date: reload it
        self.clock = clock
        self.policy = escalation.Policy.from_settings(cfg)
        self.site_policy = escalation.Policy(
            cfg.repeat_s,
            cfg.resound_s,
            (escalation.Step(0, ("unit", *settings.gateway.site_offline_targets)),),
        )
        self.notifiers = _notifiers(settings, self.policy)
        self.webpush = (
            WebPushNotifier(cfg.vapid_private_key.get_secret_value(), cfg.vapid_subject)
            if cfg.vapid_private_key
            else None
        )
        self.standby = False
        self.on_held: Callable[[Alert], None] | None = None
        self._pending: set[asyncio.Task] = set()

    async def close(self) -> None:
        """Cancel notifications under way and close the notifiers."""
        await cancel_all(self._pending)
        for n in self.notifiers.values():
            with contextlib.suppress(Exception):
                await n.close()

    def suppressed(self, site: str, now: datetime) -> bool:
        """The site's gateway alerts for its rooms (or is out of reach): the centre holds back."""
        return self.sites is not None and self.sites.suppressed(site, now)

    async def publish(self, alert: Alert) -> None:
        if self.standby:
            if self.on_held is not None:
                self.on_held(alert)
            return
        topic = self.topics.room(alert.site, alert.room, TopicKind.alert)
        await self.mqtt.publish(topic, encode(alert), qos=1, timeout=None)

    # -- raising ---------------------------------------------------------------------------

    async def store_and_announce(
        self,
        alert: Alert,
        episode: str | None,
        rc: care.RoomCare | None,
        now: datetime,
        require_monitoring: bool,
    ) -> bool | None:
        """True: raised; False: already raised (redelivery); None: the room is not monitored."""
        policy = self._policy(alert)
        note = escalation.due(self._tracking(OpenAlert(alert, episode, None), now), policy, now)
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

        t0 = time.perf_counter()  # a measurement, not a timer: the real clock
        try:
            stored = await self.db.run(write)
        except alerts_db.NotMonitored:
            self.not_monitored()  # paused or withdrawn since the last refresh: nothing
            return None
        STORE.observe(time.perf_counter() - t0)
        if stored is None:
            return False  # redelivery of an event that already raised its alert
        self.book.add(OpenAlert(stored, episode, now if note else None))
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
        await self.publish(stored.model_copy(update={"sound": sound, "notify": "new"}))
        if note is not None:
            NOTIFIED.labels("new").inc()
            await self.page(stored, note.new_targets, sound)
        return True

    async def raise_site(
        self, site: str, kind: str, episode: str, since: datetime, now: datetime
    ) -> bool:
        """A site-level alert (room `_site`): site offline, gateway storage nearly full.
        One open alert per site and kind; the id follows the episode, as for rooms."""
        key = (site, SITE_ROOM)
        handled = self.book.handled(key)
        if episode in handled:
            return False
        handled.add(episode)
        if any(o.alert.kind == kind for o in self.book.in_room(key)):
            return False
        name = await self.db.run(lambda conn: gateway_sync.site_name(conn, site))
        alert = Alert(
            alert_id=rules.alert_id(site, SITE_ROOM, kind, episode),
            site=site,
            room=SITE_ROOM,
            kind=kind,
            priority=site_watch.SITE_PRIORITY.get(kind, AlertPriority.medium),
            status=AlertStatus.firing,
            title=site_watch.site_title(kind, name),
            started=min(since, now),
        )
        raised = await self.store_and_announce(alert, episode, None, now, require_monitoring=False)
        return bool(raised)

    async def resolve_site(self, site: str, kind: str, now: datetime) -> None:
        """The system resolves the open site-level alert of this kind (its cause is gone)."""
        for oa in self.book.in_room((site, SITE_ROOM)):
            if oa.alert.kind == kind and not oa.alert.practice:
                await self.resolve(oa, now, lifecycle.SYSTEM, None)

    async def resolve(self, oa: OpenAlert, now: datetime, by: str, outcome: str | None) -> None:
        t = lifecycle.resolve(oa.alert, now, by, outcome)
        if not t.changed:
            return
        new = await self.db.run(lambda conn: alerts_db.update(conn, t.alert, by, "cause cleared"))
        self.book.drop(new)
        await self.publish(new)

    # -- repeats, escalation, re-sound -------------------------------------------------------

    def _tracking(self, oa: OpenAlert, now: datetime) -> escalation.Tracking:
        a = oa.alert
        return escalation.Tracking(
            **{f: getattr(a, f) for f in _SAME_IN_TRACKING},
            raised_at=a.started,
            last_notified_at=oa.last_notified_at,
            step=a.escalation_step,
            visit_open=(a.site, a.room) in self.care.visits,
        )

    def _policy(self, alert: Alert) -> escalation.Policy:
        return self.site_policy if alert.kind == site_watch.SITE_OFFLINE else self.policy

    async def schedule_all(self, now: datetime) -> None:
        for oa in self.book:
            await self._schedule(oa, now)
        FIRING.set(self.book.firing())
        OPEN.set(len(self.book))

    async def _schedule(self, oa: OpenAlert, now: datetime) -> None:
        if not self.book.still_open(oa):
            return
        if oa.alert.room != SITE_ROOM and self.suppressed(oa.alert.site, now):
            return  # the gateway repeats and escalates on site; "site offline" covers it here
        if (
            not oa.alert.silenced
            and not oa.alert.practice
            and care.silenced(self.care.silences, oa.alert.site, oa.alert.room, oa.alert.kind, now)
        ):
            # A silence made while it was open: record it and tell the tablets (no sound).
            muted = oa.alert.model_copy(update={"silenced": True})
            at = oa.last_notified_at or now
            oa.alert = await self.db.run(lambda c: alerts_db.notified(c, muted, at, "silenced"))
            await self.publish(lifecycle.republished(oa.alert))
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
        alert = await self.db.run(lambda c: alerts_db.notified(c, alert, now, history))
        oa.alert, oa.last_notified_at = alert, now
        NOTIFIED.labels(note.reason).inc()
        await self.publish(lifecycle.republished(alert, sound=note.sound, notify=note.reason))
        await self.page(alert, note.new_targets, note.sound)

    # -- paging --------------------------------------------------------------------------------

    async def page(self, alert: Alert, new_targets: tuple[str, ...], sound: bool) -> None:
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

    def _background(self, coro: Coroutine) -> None:
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
            await self.db.run(lambda c: alerts_db.history_note(c, alert, note))

    async def _push(self, alert: Alert) -> None:
        assert self.webpush is not None
        groups = [t.split(":", 1)[1] for t in alert.targets if t.startswith("group:")]
        try:
            subs = await self.db.run(lambda c: notifiers.push_subscriptions(c, alert.site, groups))
            if subs:
                gone = await self.webpush.push(alert, subs)
                if gone:
                    await self.db.run(lambda c: notifiers.forget_subscriptions(c, gone))
        except Exception:
            logger.exception("web push failed")

    # -- standby on a gateway ------------------------------------------------------------------

    async def takeover(self, announce: set[uuid.UUID]) -> int:
        """Stop holding back: announce the open alerts in `announce` as new (they were never
        published by the centre) and republish the others silently. Returns how many sounded."""
        self.standby = False
        n = 0
        for oa in self.book:
            a = oa.alert
            if a.alert_id in announce and a.status is AlertStatus.firing:
                sound = not a.silenced and a.priority is not AlertPriority.info
                await self.publish(lifecycle.republished(a, sound=sound, notify="new"))
                await self.page(a, tuple(a.targets), sound)
                n += 1
            else:
                await self.publish(lifecycle.republished(a))
        return n
