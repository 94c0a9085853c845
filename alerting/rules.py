"""Which observations raise which alert, when, at which priority; pure.

`RoomFacts` folds the messages of one room (states, events, heartbeats, availability)
into what is true now. `conditions` lists what currently holds, each with the moment it
began and an episode key (one alert per episode at most). `evaluate` applies the
resident's effective rules (preset + overrides, `presets.effective_rules`) and the
system timing, and says when each condition is due to alert. Nothing here does I/O or
reads the clock: the service passes `now`, so tests step time freely.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from nattillsyn.protocol import (
    AlertPriority,
    Availability,
    Event,
    EventPhase,
    EventType,
    Heartbeat,
    Message,
    RoomState,
    RoomStateName,
)

from .presets import SYSTEM_RULES, Hours, Rule, RuleKind

# Resident rules that follow a room state, and the state each follows.
STATE_RULES: dict[RoomStateName, RuleKind] = {
    RoomStateName.on_floor: RuleKind.on_floor,
    RoomStateName.out_of_bed: RuleKind.out_of_bed,
    RoomStateName.in_bathroom: RuleKind.in_bathroom,
    RoomStateName.no_motion: RuleKind.no_motion,
    RoomStateName.left_room: RuleKind.left_room,
}
EVENT_RULES: dict[EventType, RuleKind] = {
    EventType.possible_fall: RuleKind.possible_fall,
    EventType.camera_covered: RuleKind.camera_covered,
    EventType.camera_moved: RuleKind.camera_moved,
    EventType.too_dark: RuleKind.too_dark,
}

# An open alert of the key kind absorbs new causes of the value kinds in the same room
# (grouping per room, Alertmanager's inhibition): one call for one situation.
INHIBITS: dict[RuleKind, frozenset[RuleKind]] = {
    RuleKind.possible_fall: frozenset(
        {RuleKind.on_floor, RuleKind.no_motion, RuleKind.out_of_bed, RuleKind.in_bathroom}
    ),
    RuleKind.on_floor: frozenset({RuleKind.no_motion, RuleKind.out_of_bed, RuleKind.in_bathroom}),
    RuleKind.left_room: frozenset({RuleKind.out_of_bed}),
    RuleKind.device_offline: frozenset(
        {
            RuleKind.camera_covered,
            RuleKind.too_dark,
            RuleKind.camera_moved,
            RuleKind.edge_backlog,
            RuleKind.device_paused,
        }
    ),
    RuleKind.camera_covered: frozenset({RuleKind.too_dark}),
}

# Kinds resolved by the system when their cause is gone. Resident alerts only while nobody
# has acknowledged them (after that, staff own them); falls never: someone must look.
AUTO_RESOLVE_SYSTEM = frozenset(SYSTEM_RULES)
AUTO_RESOLVE_UNACKED = frozenset(
    {RuleKind.out_of_bed, RuleKind.in_bathroom, RuleKind.no_motion, RuleKind.left_room}
)

UNAVAILABLE = "Digital tillsyn ej tillgänglig – {room}: fysisk tillsyn behövs"
TITLES: dict[RuleKind, str] = {
    RuleKind.possible_fall: "Möjligt fall – {room}",
    RuleKind.on_floor: "På golvet – {room}",
    RuleKind.out_of_bed: "Ur sängen länge – {room}",
    RuleKind.in_bathroom: "Länge i badrummet – {room}",
    RuleKind.no_motion: "Ingen rörelse – {room}",
    RuleKind.left_room: "Har lämnat rummet – {room}",
    RuleKind.device_offline: UNAVAILABLE + " (enheten svarar inte)",
    RuleKind.camera_covered: UNAVAILABLE + " (kameran skymd)",
    RuleKind.camera_moved: UNAVAILABLE + " (kameran flyttad)",
    RuleKind.too_dark: UNAVAILABLE + " (för mörkt)",
    RuleKind.edge_backlog: UNAVAILABLE + " (fördröjd data)",
    RuleKind.device_paused: "Digital tillsyn ej aktiv – {room}: fysisk tillsyn behövs",
    RuleKind.practice: "ÖVNING: {room}",
}


# Alert ids are derived from what raised them, so the centre and a care-home gateway that
# evaluate the same messages name the same alert the same way (a handover without doubles).
ALERT_NAMESPACE = uuid.UUID("8d7c1f52-5b0e-4a51-9f0a-6e2b1c3d4a70")


def alert_id(site: str, room: str, kind: RuleKind | str, episode: str) -> uuid.UUID:
    """The id of the alert an episode raises (UUIDv5 of site, room, kind and episode)."""
    return uuid.uuid5(ALERT_NAMESPACE, f"{site}/{room}/{kind}/{episode}")


def title(kind: RuleKind | str, room_name: str) -> str:
    try:
        return TITLES[RuleKind(kind)].format(room=room_name)
    except (KeyError, ValueError):
        return f"{kind} – {room_name}"


@dataclass(frozen=True)
class SystemTiming:
    """Delays of the system alerts (from the alerting settings); all medium priority."""

    offline_after_s: float = 60.0
    camera_covered_delay_s: float = 30.0
    too_dark_delay_s: float = 60.0
    camera_moved_delay_s: float = 0.0
    backlog_threshold: int = 100
    backlog_delay_s: float = 60.0
    paused_delay_s: float = 120.0

    @classmethod
    def from_settings(cls, cfg) -> SystemTiming:
        """From the alerting settings, which name these fields alike."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})

    def rule(self, kind: RuleKind) -> Rule:
        delay = {
            RuleKind.device_offline: 0.0,  # the condition itself waits offline_after_s
            RuleKind.camera_covered: self.camera_covered_delay_s,
            RuleKind.too_dark: self.too_dark_delay_s,
            RuleKind.camera_moved: self.camera_moved_delay_s,
            RuleKind.edge_backlog: self.backlog_delay_s,
            RuleKind.device_paused: self.paused_delay_s,
        }[kind]
        return Rule(enabled=True, priority=AlertPriority.medium, delay_s=round(delay))


@dataclass
class OpenEvent:
    event_id: str
    start: datetime
    device: str


@dataclass
class RoomFacts:
    """What is known about one room now, folded from its messages (newest wins)."""

    site: str
    room: str
    watched_since: datetime  # when this process began to listen (the clock for "never heard")
    state: RoomStateName = RoomStateName.unknown
    state_since: datetime | None = None
    state_ts: datetime | None = None
    confidence: float = 0.0
    device: str | None = None
    events: dict[EventType, OpenEvent] = field(default_factory=dict)
    last_heartbeat: datetime | None = None  # when the last one arrived (liveness clock)
    heartbeat_ts: datetime | None = None  # its source time (ordering only)
    sessions: dict[str, int] = field(default_factory=dict)  # device → agent session
    queue: int = 0
    queue_since: datetime | None = None
    offline_since: datetime | None = None  # last will / clean offline seen (arrival)
    offline_ts: datetime | None = None  # its source time (names the episode)
    alive_ts: datetime | None = None  # source time of what last proved it alive (ditto)

    def apply(self, msg: Message, received: datetime | None = None) -> bool:
        """Fold one message in; False if it was older than what is known (ignored).

        `received` is when it arrived here: liveness runs on this clock, so a device with
        a wrong clock (a Pi without RTC) is neither always offline nor never.
        """
        if isinstance(msg, RoomState | Event | Heartbeat | Availability):
            self._session(msg.device, msg.session)
        if isinstance(msg, RoomState):
            if self.state_ts is not None and msg.ts < self.state_ts:
                return False
            self.state, self.state_since, self.state_ts = msg.state, msg.since, msg.ts
            self.confidence = msg.confidence
            self.device = msg.device
            return True
        if isinstance(msg, Event):
            if msg.type is EventType.motion:
                return True
            if msg.phase is EventPhase.end:
                current = self.events.get(msg.type)
                if current is not None and current.event_id == str(msg.event_id):
                    del self.events[msg.type]
            elif msg.phase is EventPhase.new:
                self.events[msg.type] = OpenEvent(str(msg.event_id), msg.start, msg.device)
            else:
                self.events.setdefault(
                    msg.type, OpenEvent(str(msg.event_id), msg.start, msg.device)
                )
            return True
        if isinstance(msg, Heartbeat):
            if self.heartbeat_ts is not None and msg.ts < self.heartbeat_ts:
                return False
            self.heartbeat_ts = msg.ts
            self.alive_ts = max(self.alive_ts or msg.ts, msg.ts)
            self.last_heartbeat = received or msg.ts
            self.device = msg.device
            self.offline_since = self.offline_ts = None
            if msg.queue >= 0:
                if msg.queue and self.queue_since is None:
                    self.queue_since = msg.ts
                self.queue = msg.queue
                if not msg.queue:
                    self.queue_since = None
            return True
        if isinstance(msg, Availability):
            at = received or msg.ts
            if msg.state == "offline":
                if self.heartbeat_ts is None or msg.ts >= self.heartbeat_ts:
                    self.offline_since = self.offline_since or at
                    self.offline_ts = self.offline_ts or msg.ts
            else:
                self.offline_since = self.offline_ts = None
                self.alive_ts = max(self.alive_ts or msg.ts, msg.ts)
                self.last_heartbeat = max(self.last_heartbeat or at, at)
            return True
        return False

    def _session(self, device: str, session: int) -> None:
        known = self.sessions.get(device)
        if known is not None and session > known:
            # The agent restarted: events it had open will never see their end.
            for etype, ev in list(self.events.items()):
                if ev.device == device:
                    del self.events[etype]
        if known is None or session > known:
            self.sessions[device] = session

    def offline(self, now: datetime, offline_after_s: float) -> bool:
        if self.offline_since is not None:
            return True
        seen = self.last_heartbeat or self.watched_since
        return (now - seen).total_seconds() >= offline_after_s


@dataclass(frozen=True)
class Condition:
    kind: RuleKind
    since: datetime
    episode: str  # one alert per episode at most
    device: str | None
    due_after_s: float | None = None  # fixed wait of the condition itself (None: rule delay)


def conditions(facts: RoomFacts, now: datetime, timing: SystemTiming) -> list[Condition]:
    """What holds in the room now, whether or not it is monitored.

    Episodes are named by source times (not arrival times), so every process that sees the
    same messages names them alike (`alert_id`)."""
    out: list[Condition] = []
    offline = facts.offline(now, timing.offline_after_s)
    if facts.offline_since is not None:
        out.append(
            Condition(
                RuleKind.device_offline,
                facts.offline_since,
                f"offline:{(facts.offline_ts or facts.offline_since).isoformat()}",
                facts.device,
                0.0,
            )
        )
    else:
        seen = facts.last_heartbeat or facts.watched_since
        if offline:
            out.append(
                Condition(
                    RuleKind.device_offline,
                    seen,
                    f"silent:{(facts.alive_ts or seen).isoformat()}",
                    facts.device,
                    timing.offline_after_s,
                )
            )
    for etype, ev in facts.events.items():
        kind = EVENT_RULES.get(etype)
        if kind is not None:
            out.append(Condition(kind, ev.start, f"event:{ev.event_id}", ev.device))
    if facts.queue >= timing.backlog_threshold and facts.queue_since is not None:
        out.append(
            Condition(
                RuleKind.edge_backlog,
                facts.queue_since,
                f"backlog:{facts.queue_since.isoformat()}",
                facts.device,
            )
        )
    if offline or facts.state_since is None:
        return out  # a stale state says nothing about the resident now
    if facts.state is RoomStateName.paused:
        out.append(
            Condition(
                RuleKind.device_paused,
                facts.state_since,
                f"paused:{facts.state_since.isoformat()}",
                facts.device,
            )
        )
    kind = STATE_RULES.get(facts.state)
    if kind is not None:
        out.append(
            Condition(
                kind,
                facts.state_since,
                f"state:{facts.state.value}:{facts.state_since.isoformat()}",
                facts.device,
            )
        )
    return out


@dataclass(frozen=True)
class Context:
    now: datetime
    monitored: bool  # monitoring_active(site, room, now): decision + consent + schedule + no pause
    monitored_since: datetime | None  # when monitoring last became active (None: long ago)
    tz: ZoneInfo
    timing: SystemTiming


@dataclass(frozen=True)
class Due:
    kind: RuleKind
    priority: AlertPriority
    episode: str
    since: datetime
    fire_at: datetime
    device: str | None

    def ready(self, now: datetime) -> bool:
        return self.fire_at <= now


def next_inside(hours: Hours, at: datetime, tz: ZoneInfo) -> datetime:
    """The first moment at or after `at` that lies inside the daily window."""
    local = at.astimezone(tz)
    if hours.contains(local.time().replace(tzinfo=None)):
        return at
    opening = local.replace(
        hour=hours.start.hour, minute=hours.start.minute, second=0, microsecond=0
    )
    if opening < local:
        opening += timedelta(days=1)
    return opening


def evaluate(facts: RoomFacts, rules: dict[RuleKind, Rule], ctx: Context) -> list[Due]:
    """Each enabled rule whose condition holds, with the moment it alerts."""
    if not ctx.monitored:
        return []
    out: list[Due] = []
    for cond in conditions(facts, ctx.now, ctx.timing):
        rule = ctx.timing.rule(cond.kind) if cond.kind in SYSTEM_RULES else rules.get(cond.kind)
        if rule is None or not rule.enabled:
            continue
        start = cond.since
        if ctx.monitored_since is not None and ctx.monitored_since > start:
            start = ctx.monitored_since  # the delay runs inside monitoring only
        wait = cond.due_after_s if cond.due_after_s is not None else rule.delay_s
        fire_at = start + timedelta(seconds=wait)
        if rule.hours is not None:
            fire_at = next_inside(rule.hours, fire_at, ctx.tz)
        out.append(Due(cond.kind, rule.priority, cond.episode, cond.since, fire_at, cond.device))
    return out


def inhibitor(kind: RuleKind, open_kinds: set[RuleKind] | frozenset[RuleKind]) -> RuleKind | None:
    """The open alert kind in the room that absorbs a new `kind`, if any (itself: de-dup)."""
    if kind in open_kinds:
        return kind
    for k in open_kinds:
        if kind in INHIBITS.get(k, ()):
            return k
    return None


def cleared(
    kind: RuleKind, acknowledged: bool, holding: set[RuleKind] | frozenset[RuleKind]
) -> bool:
    """Whether an open alert of `kind` is resolved by the system now that only `holding` hold."""
    if kind in holding:
        return False
    if kind in AUTO_RESOLVE_SYSTEM:
        return True
    return kind in AUTO_RESOLVE_UNACKED and not acknowledged


__all__ = [
    "ALERT_NAMESPACE",
    "AUTO_RESOLVE_SYSTEM",
    "AUTO_RESOLVE_UNACKED",
    "INHIBITS",
    "TITLES",
    "Condition",
    "Context",
    "Due",
    "RoomFacts",
    "SystemTiming",
    "alert_id",
    "cleared",
    "conditions",
    "evaluate",
    "inhibitor",
    "next_inside",
    "title",
]
