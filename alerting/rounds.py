"""Digital rounds: one entry per resident and agreed tillsyn time, decided from the sensor
state of the last minutes; pure.

Decision per entry: `digital_ok` (the digital check is enough, no door is opened) or
`physical_needed` (staff go in). Anything uncertain goes physical: no data, a stale or
offline device, paused monitoring, an open alert, low confidence, an empty room. The
summary is Swedish (it is what staff read and what is kept); clients render other
languages from `observed_state`, `observed_since` and `reason`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from nattillsyn.protocol import RoomStateName

from .presets import Rule, RuleKind

Decision = Literal["digital_ok", "physical_needed"]

STATE_SV = {
    RoomStateName.unknown: "Okänt läge",
    RoomStateName.empty: "Rummet tomt",
    RoomStateName.in_bed: "I sängen",
    RoomStateName.out_of_bed: "Ur sängen",
    RoomStateName.in_chair: "I stolen",
    RoomStateName.in_bathroom: "I badrummet",
    RoomStateName.on_floor: "På golvet",
    RoomStateName.left_room: "Har lämnat rummet",
    RoomStateName.no_motion: "Ingen rörelse",
    RoomStateName.present: "I rummet",
    RoomStateName.paused: "Pausad",
}
STOCKHOLM = ZoneInfo("Europe/Stockholm")
MIN_CONFIDENCE = 0.4
RESTLESS_CHANGES = 4  # state changes in the window that make "in bed" restless


@dataclass(frozen=True)
class StateSample:
    ts: datetime
    state: RoomStateName
    since: datetime
    confidence: float


@dataclass(frozen=True)
class RoundInput:
    scheduled_at: datetime
    mode: Literal["digital", "physical"]
    monitored: bool  # monitoring_active at scheduled_at
    samples: list[StateSample]  # room states in the window and the last one before it, by ts
    last_heartbeat: datetime | None
    device_online: bool | None
    open_alerts: list[str]  # kinds of alerts open in the room
    rules: dict[RuleKind, Rule]
    window_s: float = 600.0
    stale_s: float = 180.0  # no state report for this long → no data
    tz: ZoneInfo = STOCKHOLM


@dataclass(frozen=True)
class RoundResult:
    observed_state: str | None
    observed_since: datetime | None
    confidence: float | None
    summary: str
    decision: Decision
    reason: str


def _minutes(d: timedelta) -> int:
    return max(0, int(d.total_seconds() // 60))


def _limit(rules: dict[RuleKind, Rule], kind: RuleKind, default_s: float) -> float:
    rule = rules.get(kind)
    return float(rule.delay_s) if rule is not None and rule.enabled else default_s


def decide(inp: RoundInput) -> RoundResult:
    at = inp.scheduled_at
    last = max((s for s in inp.samples if s.ts <= at), key=lambda s: s.ts, default=None)
    observed = last.state.value if last else None
    since = last.since if last else None
    conf = last.confidence if last else None

    def result(summary: str, decision: Decision, reason: str) -> RoundResult:
        return RoundResult(observed, since, conf, summary, decision, reason)

    if inp.mode == "physical":
        return result("Planerad fysisk tillsyn", "physical_needed", "planned_physical")
    if not inp.monitored:
        return result(
            "Digital tillsyn ej aktiv (paus eller inget samtycke)",
            "physical_needed",
            "not_monitored",
        )
    heartbeat_ok = inp.last_heartbeat is not None and at - inp.last_heartbeat <= timedelta(
        seconds=inp.stale_s
    )
    if inp.device_online is False or not heartbeat_ok:
        return result("Inga data: enheten svarar inte", "physical_needed", "device_offline")
    if last is None or at - last.ts > timedelta(seconds=max(inp.stale_s, inp.window_s)):
        return result("Inga data", "physical_needed", "no_data")
    if inp.open_alerts:
        return result(f"{STATE_SV[last.state]} – öppet larm", "physical_needed", "open_alert")
    if last.confidence < MIN_CONFIDENCE:
        return result(f"{STATE_SV[last.state]} (osäkert)", "physical_needed", "low_confidence")
    held = at - last.since
    local_since = last.since.astimezone(inp.tz).strftime("%H:%M")
    window_start = at - timedelta(seconds=inp.window_s)
    changes = sum(1 for s in inp.samples if window_start <= s.since <= at)
    st = last.state
    if st is RoomStateName.in_bed:
        if changes >= RESTLESS_CHANGES:
            return result(f"I sängen, orolig sedan {local_since}", "digital_ok", "in_bed_restless")
        return result(f"I sängen, lugn sedan {local_since}", "digital_ok", "in_bed_calm")
    if st is RoomStateName.in_chair:
        return result(f"I stolen sedan {local_since}", "digital_ok", "in_chair")
    if st is RoomStateName.in_bathroom:
        limit = _limit(inp.rules, RuleKind.in_bathroom, 1200)
        text = f"I badrummet {_minutes(held)} min"
        if held.total_seconds() < limit:
            return result(text, "digital_ok", "in_bathroom")
        return result(text, "physical_needed", "bathroom_long")
    if st in (RoomStateName.out_of_bed, RoomStateName.present):
        limit = _limit(inp.rules, RuleKind.out_of_bed, 600)
        text = f"{STATE_SV[st]} {_minutes(held)} min"
        if held.total_seconds() < limit:
            return result(text, "digital_ok", "up_briefly")
        return result(text, "physical_needed", "up_long")
    if st is RoomStateName.on_floor:
        return result(f"På golvet sedan {local_since}", "physical_needed", "on_floor")
    if st is RoomStateName.left_room:
        return result(f"Har lämnat rummet {local_since}", "physical_needed", "left_room")
    if st is RoomStateName.empty:
        return result(f"Rummet tomt sedan {local_since}", "physical_needed", "empty")
    if st is RoomStateName.no_motion:
        return result(f"Ingen rörelse sedan {local_since}", "physical_needed", "no_motion")
    if st is RoomStateName.paused:
        return result("Enheten pausad", "physical_needed", "device_paused")
    return result("Okänt läge", "physical_needed", "unknown")


def occurrence(at_time, now: datetime, tz: ZoneInfo) -> datetime:
    """The latest moment at or before `now` when the local clock showed `at_time`."""
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), at_time, tzinfo=tz)
    if candidate > local:
        candidate = datetime.combine(local.date() - timedelta(days=1), at_time, tzinfo=tz)
    return candidate


__all__ = ["Decision", "RoundInput", "RoundResult", "StateSample", "decide", "occurrence"]
