"""Rooms watched: each room's messages folded into facts (`rules.RoomFacts`), its rules
evaluated (`rules.evaluate`) after each message and whenever the room is due again (a delay
running out, a heartbeat going stale), alerts raised, grouped under an open one, or resolved
when their cause is gone."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime, timedelta

from prometheus_client import Counter, Histogram

from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.protocol import (
    Alert,
    AlertStatus,
    Availability,
    Event,
    EventPhase,
    EventType,
    Heartbeat,
    RoomState,
)

from . import alerts_db, care, lifecycle, rules
from .open_alerts import Key
from .paging import Pager
from .presets import RuleKind

GROUPED = Counter("nattillsyn_alerting_grouped_total", "Causes absorbed by an open alert", ["kind"])
LATENCY = Histogram(
    "nattillsyn_alerting_event_to_alert_seconds",
    "Source time of the triggering message to publication of its alert",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
RECHECK = timedelta(seconds=60)  # a room with nothing pending is looked at this often


def _event_id(episode: str) -> uuid.UUID | None:
    if episode.startswith("event:"):
        with contextlib.suppress(ValueError):
            return uuid.UUID(episode.removeprefix("event:"))
    return None


class RoomWatch:
    def __init__(self, timing: rules.SystemTiming, pager: Pager, clock: Clock = SYSTEM) -> None:
        self.timing = timing
        self.pager = pager
        self.care = pager.care
        self.book = pager.book
        self.clock = clock
        self.started_at = clock.now()
        self.facts: dict[Key, rules.RoomFacts] = {}
        # When each room must be evaluated again without a new message: the tick looks only
        # at rooms that are due.
        self.next_check: dict[Key, datetime] = {}
        self._locks: dict[Key, asyncio.Lock] = {}

    def facts_of(self, key: Key) -> rules.RoomFacts:
        f = self.facts.get(key)
        if f is None:
            f = self.facts[key] = rules.RoomFacts(key[0], key[1], watched_since=self.started_at)
            self.next_check.setdefault(key, self.started_at)
        return f

    def recheck(self, keys, now: datetime) -> None:
        """Evaluate these rooms at the next tick (their rules or monitoring changed)."""
        for key in keys:
            self.next_check[key] = now

    def recheck_site(self, site: str, now: datetime) -> None:
        self.recheck({k for k in (*self.facts, *self.care.rooms) if k[0] == site}, now)

    async def on_message(self, msg: RoomState | Event | Heartbeat | Availability) -> None:
        if isinstance(msg, Event) and msg.type is EventType.motion:
            return  # motion alone never alerts; it is the bulk of the traffic
        key = (msg.site, msg.room)
        if not self.facts_of(key).apply(msg, self.clock.now()):
            return
        trigger = msg.ts if isinstance(msg, Event | RoomState) else None
        if isinstance(msg, Event) and msg.phase is not EventPhase.new:
            trigger = None
        await self.evaluate(key, self.clock.now(), trigger)

    async def tick(self, now: datetime) -> None:
        due = [k for k, t in self.next_check.items() if t <= now]
        for n, key in enumerate(due):
            await self.evaluate(key, now)
            if n % 50 == 49:
                await asyncio.sleep(0)  # let messages through between slices

    async def evaluate(self, key: Key, now: datetime, trigger_ts: datetime | None = None) -> None:
        if self.pager.suppressed(key[0], now):
            # Facts keep folding; the rooms are evaluated again when the site is handed back.
            self.next_check[key] = now + RECHECK
            return
        async with self._locks.setdefault(key, asyncio.Lock()):
            facts = self.facts_of(key)
            rc = self.care.rooms.get(key)
            monitored = rc is not None and rc.monitored
            tz = rc.tz if rc else care.zone("Europe/Stockholm")
            ctx = rules.Context(now, monitored, self.care.monitored_since.get(key), tz, self.timing)
            dues = rules.evaluate(facts, rc.rules if rc else {}, ctx)
            await self._resolve_cleared(key, facts, now)
            handled = self.book.handled(key)
            for due in dues:
                if not due.ready(now) or due.episode in handled:
                    continue
                handled.add(due.episode)
                if await self._absorbed(key, due, now):
                    continue
                raised = await self._raise(key, rc, due, now)
                if raised is None:
                    handled.discard(due.episode)  # not monitored after all: may alert later
                if raised and trigger_ts is not None:
                    LATENCY.observe(max(0.0, (self.clock.now() - trigger_ts).total_seconds()))
            self.next_check[key] = self._next_check(facts, dues, handled, now)

    async def _resolve_cleared(self, key: Key, facts: rules.RoomFacts, now: datetime) -> None:
        """Auto-resolve what no longer holds."""
        holding = {c.kind for c in rules.conditions(facts, now, self.timing)}
        for oa in self.book.in_room(key):
            if oa.alert.practice:
                continue
            try:
                kind = RuleKind(oa.alert.kind)
            except ValueError:
                continue
            acked = oa.alert.status is AlertStatus.acknowledged
            if rules.cleared(kind, acked, holding):
                await self.pager.resolve(oa, now, lifecycle.SYSTEM, None)

    async def _absorbed(self, key: Key, due: rules.Due, now: datetime) -> bool:
        """An open alert of the room covers this cause (grouping): count it there."""
        open_here = {
            RuleKind(o.alert.kind): o
            for o in self.book.in_room(key)
            if not o.alert.practice and o.alert.kind in RuleKind.__members__
        }
        absorber = rules.inhibitor(due.kind, frozenset(open_here))
        if absorber is None:
            return False
        oa = open_here[absorber]
        count = await self.pager.db.run(lambda c: alerts_db.occurred(c, oa.alert.alert_id, now))
        oa.alert = oa.alert.model_copy(update={"occurrences": count or 1})
        GROUPED.labels(due.kind.value).inc()
        return True

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
        return min(times) if times else now + RECHECK

    async def _raise(
        self, key: Key, rc: care.RoomCare | None, due: rules.Due, now: datetime
    ) -> bool | None:
        site, room = key
        name = rc.name if rc else room
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
            silenced=care.silenced(self.care.silences, site, room, due.kind.value, now),
        )
        return await self.pager.store_and_announce(
            alert, due.episode, rc, now, require_monitoring=True
        )
