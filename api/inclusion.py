"""Inclusion rules, pure: when may a resident be monitored, and when does that change next.

`status()` decides `residents.monitoring_active` from the recorded facts; the SQL
function `monitoring_active(site, room, at)` then adds the nightly window and pauses.
`next_boundary()` tells the config pusher when the answer of that function can change
by the clock alone (window start/end, pause start/end).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Criterion:
    key: str
    required: bool


@dataclass(frozen=True)
class ConsentFacts:
    withdrawn: bool
    cohabitants_consent: bool  # every cohabitant named has consented
    covers_monitoring: bool  # the scope includes motion analysis


@dataclass(frozen=True)
class Facts:
    active: bool  # still a resident of the unit
    has_room: bool
    decision_reference: str | None
    decision_date: date | None
    offer_answer: str  # pending / accepted / declined
    criteria: list[Criterion] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)  # key -> yes / no / unknown
    consents: list[ConsentFacts] = field(default_factory=list)  # newest first


@dataclass(frozen=True)
class Status:
    monitoring_allowed: bool
    missing: list[str]  # machine-readable reasons, in workflow order


def status(f: Facts, today: date) -> Status:
    """Monitoring is allowed only on a decision, an accepted offer, met criteria and consent."""
    missing: list[str] = []
    if not f.active:
        missing.append("discharged")
    if not f.decision_reference or f.decision_date is None:
        missing.append("decision")
    elif f.decision_date > today:
        missing.append("decision_in_future")
    if f.offer_answer == "declined":
        missing.append("offer_declined")
    elif f.offer_answer != "accepted":
        missing.append("offer_answer")
    for c in f.criteria:
        if c.required and f.answers.get(c.key) != "yes":
            missing.append(f"criterion:{c.key}")
    current = next((c for c in f.consents if not c.withdrawn), None)
    if current is None:
        missing.append("consent_withdrawn" if f.consents else "consent")
    else:
        if not current.covers_monitoring:
            missing.append("consent_scope")
        if not current.cohabitants_consent:
            missing.append("cohabitant_consent")
    if not f.has_room:
        missing.append("room")
    return Status(not missing, missing)


@dataclass(frozen=True)
class Window:
    timezone: str
    start: time  # monitor_from
    end: time  # monitor_to (equal to start: round the clock)


def next_local(at: datetime, t: time, tz: ZoneInfo) -> datetime:
    """The first moment after `at` when the wall clock in `tz` shows `t`."""
    local = at.astimezone(tz)
    for days in range(3):
        d = local.date() + timedelta(days=days)
        candidate = datetime.combine(d, t, tzinfo=tz)
        # Wall times skipped by a DST change map forward; fold keeps it monotone enough here.
        if candidate > local:
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def next_boundary(
    now: datetime, windows: list[Window], pause_edges: list[datetime]
) -> datetime | None:
    """The next moment after `now` when a window opens/closes or a pause starts/ends."""
    candidates = [e for e in pause_edges if e > now]
    for w in windows:
        if w.start == w.end:
            continue
        tz = ZoneInfo(w.timezone)
        candidates.append(next_local(now, w.start, tz))
        candidates.append(next_local(now, w.end, tz))
    return min(candidates) if candidates else None
