"""Period totals read from the database, the input of the report maths (no NumPy here)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date


@dataclass
class ResidentTotals:
    site: str
    resident_id: str
    nights: int = 0
    rounds: int = 0
    rounds_digital: int = 0
    digital_ok: int = 0
    physical_needed: int = 0
    visits: int = 0
    visits_round: int = 0
    visits_alert: int = 0
    visits_planned: int = 0
    visits_unplanned: int = 0
    visits_timed: int = 0
    visit_minutes: float = 0.0
    alerts: int = 0
    scheduled_s: float = 0.0
    paused_s: float = 0.0
    covered_s: float = 0.0
    paused_nights: int = 0
    checks_physical: int = 0  # at rest before the check
    woken_physical: int = 0  # of those, activity within the window
    checks_digital: int = 0
    woken_digital: int = 0
    alerts_with_outcome: int = 0
    false_alarms: int = 0


NUMERIC = [f.name for f in fields(ResidentTotals) if f.name not in ("site", "resident_id")]


@dataclass
class AlertStats:
    site: str
    kind: str | None = None  # None: every kind together
    priority: str | None = None
    alerts: int = 0
    residents: int = 0
    with_outcome: int = 0
    false_alarms: int = 0
    ack_median_s: float | None = None
    ack_p90_s: float | None = None
    response_median_s: float | None = None
    response_p90_s: float | None = None
    resolve_median_s: float | None = None
    resolve_p90_s: float | None = None


@dataclass
class NightTotals:
    site: str
    night: date
    residents: int = 0
    rounds: int = 0
    digital_ok: int = 0
    visits: int = 0
    alerts: int = 0
    scheduled_s: float = 0.0
    paused_s: float = 0.0
    covered_s: float = 0.0
    paused: int = 0


@dataclass
class BaselineTotals:
    site: str
    resident_ref: str
    nights: int = 0
    visits: int = 0
    minutes_known: float = 0.0  # summed over nights that recorded minutes
    visits_without_minutes: int = 0  # visits on nights that did not
