"""What a report holds: the figures an evaluator sees, already suppressed and pseudonymised.

These models are the HTTP contract of the evaluation api as well (api/models.py imports them),
and what the HTML, CSV and Parquet renderings are made from. `None` in a figure means
suppressed (fewer than k residents behind it) or not computable (nothing to divide by).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Estimate(_Model):
    """A figure with its bootstrap confidence interval (resampling residents)."""

    value: float | None = Field(None, description="Point estimate; null if suppressed or 0/0.")
    low: float | None = Field(None, description="Lower confidence bound.")
    high: float | None = Field(None, description="Upper confidence bound.")
    suppressed: bool = Field(False, description="Fewer than k residents: not shown.")


class Params(_Model):
    minutes_per_visit: float = Field(description="Staff minutes per physical visit.")
    awakening_window_min: float = Field(description="Minutes after a check that count.")
    k_anonymity: int = Field(description="Smallest number of residents behind a figure.")
    bootstrap_samples: int = Field(description="Bootstrap resamples.")
    confidence: float = Field(description="Confidence level of the intervals.")


class UnitSummary(_Model):
    """The figures of one unit (or of all units together) over the period."""

    site: str = Field(description="Unit id ('*' for all units together).")
    name: str = Field(description="Unit name.")
    suppressed: bool = Field(False, description="Fewer than k residents: figures withheld.")
    residents: int | None = Field(None, description="Residents with any night in the period.")
    resident_nights: int | None = Field(None, description="Resident-nights counted.")
    rounds: int | None = Field(None, description="Agreed tillsyn times with a round entry.")
    digital_ok: int | None = Field(
        None, description="Rounds settled digitally: physical visits avoided."
    )
    physical_needed: int | None = Field(None, description="Rounds that needed a physical visit.")
    visits: int | None = Field(None, description="Physical visits made, any reason.")
    visits_by_reason: dict[str, int | None] = Field(
        default_factory=dict,
        description="Physical visits by reason (round/alert/planned/unplanned).",
    )
    visits_per_resident_night: Estimate = Field(default_factory=Estimate)
    avoided_share: Estimate = Field(
        default_factory=Estimate, description="Share of rounds settled digitally."
    )
    staff_minutes_saved: float | None = Field(
        None, description="Avoided visits × minutes per visit."
    )
    staff_minutes: float | None = Field(
        None, description="Minutes spent on physical visits (measured, else minutes per visit)."
    )
    checks_physical: int | None = Field(
        None, description="Physical round/planned visits to a resting resident."
    )
    checks_digital: int | None = Field(None, description="Digital checks of a resting resident.")
    awakening_rate_physical: Estimate = Field(
        default_factory=Estimate, description="Share of physical checks followed by activity."
    )
    awakening_rate_digital: Estimate = Field(
        default_factory=Estimate, description="Share of digital checks followed by activity."
    )
    awakening_difference: Estimate = Field(
        default_factory=Estimate, description="Physical minus digital awakening rate."
    )
    staff_caused_awakenings: Estimate = Field(
        default_factory=Estimate,
        description="Awakenings in excess of the digital-check rate, over the physical checks.",
    )
    alerts: int | None = Field(None, description="Alerts (practice excluded).")
    alerts_per_100_nights: Estimate = Field(default_factory=Estimate)
    false_alarm_share: Estimate = Field(
        default_factory=Estimate, description="False alarms among alerts with an outcome."
    )
    alerts_without_outcome: int | None = Field(None, description="Alerts never given an outcome.")
    ack_median_s: float | None = Field(None, description="Acknowledgement time, median (s).")
    ack_p90_s: float | None = Field(None, description="Acknowledgement time, 90th percentile (s).")
    response_median_s: float | None = Field(
        None, description="Alert to staff in the room, median (s)."
    )
    response_p90_s: float | None = Field(None, description="Alert to staff in the room, p90 (s).")
    resolve_median_s: float | None = Field(None, description="Alert to resolved, median (s).")
    resolve_p90_s: float | None = Field(None, description="Alert to resolved, p90 (s).")
    coverage: Estimate = Field(
        default_factory=Estimate,
        description="Share of scheduled, unpaused monitoring time with a healthy device.",
    )
    paused_nights: int | None = Field(None, description="Resident-nights with a pause.")
    paused_share: float | None = Field(None, description="Paused nights / resident-nights.")


class AlertCell(_Model):
    kind: str = Field(description="Alert kind (rule).")
    priority: str = Field(description="high / medium / low / info.")
    suppressed: bool = Field(False, description="Fewer than k residents behind the cell.")
    alerts: int | None = None
    false_alarms: int | None = None
    with_outcome: int | None = None
    false_alarm_share: float | None = None
    ack_median_s: float | None = None
    ack_p90_s: float | None = None
    response_median_s: float | None = None
    response_p90_s: float | None = None


class NightRow(_Model):
    night: date = Field(description="The night starting on this local date.")
    suppressed: bool = False
    residents: int | None = None
    rounds: int | None = None
    digital_ok: int | None = None
    visits: int | None = None
    alerts: int | None = None
    coverage: float | None = None
    paused: int | None = None


class ResidentRow(_Model):
    pseudonym: str = Field(description="Pseudonym valid in this export only.")
    nights: int
    rounds: int
    digital_ok: int
    visits: int
    visits_per_night: float | None
    avoided_share: float | None
    checks_physical: int
    woken_after_physical: int
    checks_digital: int
    woken_after_digital: int
    alerts: int
    false_alarms: int
    coverage: float | None
    paused_nights: int


class Side(_Model):
    """One side of a before/after comparison."""

    label: str
    start: date | None = None
    end: date | None = None
    suppressed: bool = False
    residents: int | None = None
    resident_nights: int | None = None
    visits_per_resident_night: Estimate = Field(default_factory=Estimate)
    minutes_per_resident_night: Estimate = Field(default_factory=Estimate)


class BeforeAfter(_Model):
    before: Side
    after: Side
    visits_difference: Estimate = Field(
        default_factory=Estimate, description="After minus before, visits per resident-night."
    )
    visits_change: Estimate = Field(
        default_factory=Estimate, description="Relative change in visits per resident-night."
    )
    minutes_difference: Estimate = Field(
        default_factory=Estimate, description="After minus before, minutes per resident-night."
    )


class UnitDifference(_Model):
    """The reported unit minus another unit, with intervals from resampling both."""

    site: str = Field(description="The other unit.")
    name: str
    suppressed: bool = Field(False, description="Either unit below k residents.")
    visits_per_resident_night: Estimate = Field(default_factory=Estimate)
    avoided_share: Estimate = Field(default_factory=Estimate)
    awakening_rate_physical: Estimate = Field(default_factory=Estimate)
    false_alarm_share: Estimate = Field(default_factory=Estimate)
    coverage: Estimate = Field(default_factory=Estimate)


class ResidentNightRow(_Model):
    """Microdata for analysis: one resident-night under this export's pseudonym."""

    pseudonym: str
    night: date
    rounds: int
    digital_ok: int
    physical_needed: int
    visits: int
    visits_round: int
    visits_alert: int
    visits_planned: int
    visits_unplanned: int
    visit_minutes: float
    alerts: int
    coverage: float | None
    paused: bool


class Report(_Model):
    generated_at: datetime
    site: str = Field(description="The unit reported on.")
    name: str = Field(description="Its name.")
    start: date = Field(description="First night.")
    end: date = Field(description="Last night.")
    source: Literal["summary", "raw"] = Field(
        "summary", description="Summary tables (normal) or raw tables (checks, benchmark)."
    )
    params: Params
    summary: UnitSummary
    units: list[UnitSummary] = Field(
        default_factory=list, description="Every unit the reader may see, for comparison."
    )
    differences: list[UnitDifference] = Field(
        default_factory=list, description="This unit minus each other unit."
    )
    before_after: BeforeAfter | None = Field(
        None, description="Against the imported baseline, if there is one."
    )
    alerts: list[AlertCell] = Field(default_factory=list)
    nights: list[NightRow] = Field(default_factory=list)
    residents: list[ResidentRow] | None = Field(
        None, description="Per resident, pseudonymised; withheld below k residents."
    )
    resident_nights: list[ResidentNightRow] | None = Field(
        None,
        description="Per resident and night, pseudonymised; only in file exports, withheld "
        "below k residents.",
    )
    notes: list[str] = Field(default_factory=list, description="What was suppressed, and why.")


class BaselineError(_Model):
    line: int = Field(description="Line in the file (1 = header).")
    message: str


class BaselineImportResult(_Model):
    import_id: str | None = Field(None, description="Id of the import; null if nothing stored.")
    site: str
    rows: int = Field(description="Rows stored (new or replaced).")
    errors: list[BaselineError] = Field(
        default_factory=list, description="Rows refused; nothing is stored if any."
    )
