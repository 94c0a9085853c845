"""Administration of residents: inclusion, consent, schedules, pauses, alerting profile."""

from __future__ import annotations

import uuid
from datetime import date as datetime_date
from datetime import datetime, time
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from .common import Body, Id, Key, Note, Text
from .devices import DeviceView

ConsentScope = Literal[
    "motion_analysis", "alerts_to_staff", "digital_rounds", "evaluation_pseudonymised"
]


class Decision(Body):
    reference: Text = Field(description="Needs-assessment decision reference (biståndsbeslut).")
    date: datetime_date = Field(description="Date of the decision.")
    note: Note | None = None


class Offer(Body):
    answer: Literal["pending", "accepted", "declined"] = Field(
        description="The resident's answer to the offer of digital tillsyn (offered by default)."
    )
    physical_reason: Note | None = Field(
        None, description="Why physical tillsyn is kept, when declined."
    )


class CriterionAnswer(Body):
    key: Key
    answer: Literal["yes", "no", "unknown"]
    note: Note | None = None


class CriteriaAnswers(Body):
    answers: list[CriterionAnswer] = Field(max_length=50)


class Cohabitant(Body):
    name: Text
    consented: bool = Field(description="The cohabitant consents too.")


class ConsentCreate(Body):
    given_by: Text = Field(description="Who gave consent.")
    relation: Literal["resident", "legal_representative", "relative", "other"]
    given_at: AwareDatetime = Field(description="When consent was given.")
    scope: list[ConsentScope] = Field(
        min_length=1, max_length=4, description="What the consent covers."
    )
    cohabitants: list[Cohabitant] = Field(default_factory=list, max_length=10)
    note: Note | None = None


class Consent(Body):
    id: uuid.UUID
    given_by: str
    relation: str
    given_at: datetime
    scope: list[str]
    cohabitants: list[Cohabitant]
    note: str | None = None
    recorded_by: str
    recorded_at: datetime
    withdrawn_at: datetime | None = None
    withdrawn_by: str | None = None
    withdrawal_reason: str | None = None


class Withdrawal(Body):
    reason: Note | None = Field(None, description="Why (optional).")


class TillsynTime(Body):
    at: time = Field(description="Agreed time of night (unit's time zone).")
    mode: Literal["digital", "physical"]


class Schedule(Body):
    monitor_from: time = Field(description="Nightly monitoring starts (equal to end: all day).")
    monitor_to: time = Field(description="Nightly monitoring ends.")
    tillsyn_times: list[TillsynTime] = Field(default_factory=list, max_length=48)


class PauseCreate(Body):
    starts_at: AwareDatetime | None = Field(None, description="Default: now.")
    ends_at: AwareDatetime | None = Field(
        None, description="Default: the end of tonight's monitoring window."
    )
    reason: Note | None = None


class Pause(Body):
    id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    reason: str | None = None
    created_by: str | None = None


class AlertingProfile(Body):
    risk_preset: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,32}$")] = Field(
        description="Risk preset used by alerting."
    )
    rule_overrides: dict[str, Any] = Field(
        default_factory=dict, description="Per-resident overrides of the preset's rules."
    )


class ResidentSummary(Body):
    id: uuid.UUID
    site: str
    room: str | None = None
    display_name: str
    active: bool
    monitoring_active: bool = Field(description="Decision, offer, criteria and consent in place.")
    monitoring_now: bool = Field(description="monitoring_active(site, room, now()).")
    missing: list[str] = Field(description="What still stops monitoring, in workflow order.")
    risk_preset: str


class ResidentList(Body):
    residents: list[ResidentSummary]


class ResidentCreate(Body):
    site: Id
    display_name: Text
    room: Id | None = None


class ResidentUpdate(Body):
    display_name: Text | None = None
    room: Id | None = Field(None, description="Move to this room.")
    active: bool | None = Field(None, description="False: discharged (stops monitoring).")


class Inclusion(Body):
    decision_reference: str | None = None
    decision_date: datetime_date | None = None
    decision_note: str | None = None
    offer_default: Literal["digital"] = "digital"
    offered_at: datetime | None = None
    offered_by: str | None = None
    offer_answer: Literal["pending", "accepted", "declined"] = "pending"
    answered_at: datetime | None = None
    physical_reason: str | None = None


class CriterionState(Body):
    key: str
    label_sv: str
    label_en: str
    required: bool
    answer: Literal["yes", "no", "unknown"] | None = None
    note: str | None = None
    answered_by: str | None = None


class ResidentDetail(Body):
    resident: ResidentSummary
    inclusion: Inclusion
    criteria: list[CriterionState]
    consents: list[Consent]
    schedule: Schedule
    pauses: list[Pause]
    alerting: AlertingProfile
    device: DeviceView | None = None


class RiskPresetInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(description="Stored in residents.risk_preset.")
    label_sv: str
    label_en: str
    description_sv: str = ""
    description_en: str = ""


class RiskPresetCatalog(Body):
    default: str = Field(description="Preset of a new resident.")
    presets: list[RiskPresetInfo]
    overrides_schema: dict[str, Any] = Field(
        default_factory=dict, description="JSON schema of residents.rule_overrides."
    )
