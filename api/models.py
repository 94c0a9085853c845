"""The HTTP contract: request and response bodies of the api (OpenAPI is built from these).

Alerts travel as the MQTT contract's `Alert` model; nothing here re-declares it.
"""

from __future__ import annotations

import uuid
from datetime import date as datetime_date
from datetime import datetime, time
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, create_model

# Evaluation figures are defined once in nattillsyn.evaluation.model; re-exported here.
from nattillsyn.evaluation.model import BaselineImportResult as BaselineImportResult
from nattillsyn.evaluation.model import Report as Report
from nattillsyn.protocol import Alert, DeviceConfig, RoomStateName


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(Body):
    username: str = Field(min_length=1, max_length=64, description="User name.")
    password: str = Field(min_length=1, max_length=256, description="Password.")


class Me(Body):
    username: str = Field(description="User name.")
    display_name: str = Field(description="Name shown in the app.")
    role: Literal["night_staff", "unit_manager", "evaluator", "sysadmin"] = Field(
        description="Role that decides what the user may see and do."
    )
    sites: list[str] = Field(description="Units (sites) the user belongs to.")


class RoomView(Body):
    id: str = Field(description="Room id.")
    name: str = Field(description="Room name shown to staff.")
    state: RoomStateName = Field(description="Last reported room state.")
    since: datetime | None = Field(None, description="When that state began.")
    updated: datetime | None = Field(None, description="Source time of the last state report.")
    device_online: bool | None = Field(None, description="Whether the room device is online.")
    last_heartbeat: datetime | None = Field(None, description="Last heartbeat of the device.")
    resident: str | None = Field(None, description="Resident's name (staff views only).")
    monitored: bool | None = Field(None, description="Monitoring active now.")


class Snapshot(Body):
    type: Literal["snapshot"] = "snapshot"
    rooms: list[RoomView] = Field(description="Every room of the site.")
    alerts: list[Alert] = Field(description="Open alerts and those resolved in the last hour.")
    cursor: int = Field(0, description="Alert changes up to this number are included (replay).")
    rounds: list[dict] = Field(default_factory=list, description="Tonight's round entries.")
    visits: list[dict] = Field(default_factory=list, description="Tonight's visits.")
    locked: bool = Field(False, description="Tablet lock screen: alerts only, no resident data.")
    alerting_ok: bool | None = Field(
        None, description="Alerting is alive (false: staff must fall back to physical checks)."
    )


class AlertActionRequest(Body):
    outcome: Literal["needed_help", "false_alarm", "not_needed"] | None = Field(
        None, description="On resolve: was the alert real?"
    )


class Accepted(Body):
    accepted: bool = Field(True, description="The action was passed to alerting.")
    action_id: uuid.UUID = Field(description="Id of the AlertAction message sent.")


class Problem(Body):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", description="Problem type URI.")
    title: str = Field(description="Short summary.")
    status: int = Field(description="HTTP status code.")
    detail: str | None = Field(None, description="Explanation of this occurrence.")


# -- administration (issue 8) ----------------------------------------------------------

Role = Literal["night_staff", "unit_manager", "evaluator", "sysadmin"]
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Note = Annotated[str, StringConstraints(max_length=2000)]
ConsentScope = Literal[
    "motion_analysis", "alerts_to_staff", "digital_rounds", "evaluation_pseudonymised"
]


class Organisation(Body):
    id: str = Field(description="Organisation id.")
    name: str = Field(description="Organisation name (the municipality or provider).")


class Unit(Body):
    id: Id = Field(description="Unit id (site id in topics).")
    name: Text = Field(description="Unit name.")
    kind: Literal["care_home", "home_care"] = Field(description="Care home or home-care area.")
    timezone: str = Field(description="IANA time zone of the unit's schedules.")
    active: bool = Field(description="Whether the unit is in use.")
    organisation_id: str = Field(description="Owning organisation.")
    rooms: int = Field(0, description="Number of active rooms.")
    residents: int = Field(0, description="Number of active residents.")


class UnitsOverview(Body):
    organisation: Organisation
    units: list[Unit]


class UnitCreate(Body):
    id: Id = Field(description="Unit id, unique; used in MQTT topics.")
    name: Text = Field(description="Unit name.")
    kind: Literal["care_home", "home_care"] = "care_home"
    timezone: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_\-+]+)*$")] = (
        "Europe/Stockholm"
    )


class UnitUpdate(Body):
    name: Text | None = None
    kind: Literal["care_home", "home_care"] | None = None
    timezone: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_\-+]+)*$")] | None
    ) = None
    active: bool | None = None


class Room(Body):
    id: Id = Field(description="Room id (unique in the unit; used in MQTT topics).")
    name: Text = Field(description="Room name shown to staff.")
    active: bool = Field(description="Whether the room is in use.")
    resident_id: uuid.UUID | None = Field(None, description="Active resident placed in it.")
    resident_name: str | None = Field(None, description="Name of that resident.")
    device: str | None = Field(None, description="Device id watching the room.")


class RoomList(Body):
    rooms: list[Room]


class RoomCreate(Body):
    id: Id
    name: Text


class RoomUpdate(Body):
    name: Text | None = None
    active: bool | None = None


class Criterion(Body):
    key: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")] = Field(
        description="Stable key of the criterion."
    )
    label_sv: Text = Field(description="Question in Swedish.")
    label_en: Text = Field(description="Question in English.")
    required: bool = Field(True, description="Must be answered yes for monitoring.")


class CriteriaList(Body):
    site: str = Field(description="Unit the checklist applies to.")
    own: bool = Field(description="False: the organisation's default checklist is used.")
    criteria: list[Criterion]


class CriteriaUpdate(Body):
    criteria: list[Criterion] = Field(max_length=50, description="The unit's checklist, in order.")


class StaffUser(Body):
    id: uuid.UUID
    username: str
    display_name: str
    role: Role
    active: bool
    sites: list[str] = Field(description="Units the user belongs to.")
    auth_provider: str = Field(description="password, or an external provider (OIDC).")


class UserList(Body):
    users: list[StaffUser]


Password = Annotated[str, StringConstraints(min_length=10, max_length=256)]
Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9._\-]{2,64}$")]


class UserCreate(Body):
    username: Username
    display_name: Text
    role: Role
    password: Password = Field(description="At least 10 characters.")
    sites: list[Id] = Field(default_factory=list, max_length=100)


class UserUpdate(Body):
    display_name: Text | None = None
    role: Role | None = None
    active: bool | None = None
    sites: list[Id] | None = Field(None, max_length=100)
    password: Password | None = Field(None, description="Set a new password (signs out).")


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
    key: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]
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


class DeviceView(Body):
    site: str
    id: str
    name: str | None = None
    room: str | None = None
    status: Literal["provisioned", "active", "retired"]
    managed: bool = Field(description="Provisioned through administration (gets configs).")
    availability: str
    health: Literal["ok", "stale", "offline", "never_seen", "config_pending", "retired"]
    last_heartbeat: datetime | None = None
    last_seen: datetime | None = None
    agent_version: str | None = None
    fps: float | None = None
    monitoring: bool | None = Field(None, description="Analysis running, from the heartbeat.")
    applied_version: int = Field(description="Config version the device reports.")
    desired_version: int = Field(description="Config version last pushed.")
    desired_monitoring: bool | None = None
    claimed_at: datetime | None = None
    claim_expires_at: datetime | None = None
    replaces: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class DeviceList(Body):
    devices: list[DeviceView]


class ResidentDetail(Body):
    resident: ResidentSummary
    inclusion: Inclusion
    criteria: list[CriterionState]
    consents: list[Consent]
    schedule: Schedule
    pauses: list[Pause]
    alerting: AlertingProfile
    device: DeviceView | None = None


class ChangeEntry(Body):
    id: int
    at: datetime
    username: str
    role: str
    entity: str
    entity_id: str
    change: str
    before: Any = None
    after: Any = None


class ChangeList(Body):
    changes: list[ChangeEntry]


# The parts of DeviceConfig an administrator sets, derived from the contract so a new device
# setting appears here by itself; monitoring, version, schedule and time zone are managed.
MANAGED_DEVICE_FIELDS = frozenset(
    {"v", "id", "ts", "version", "monitoring", "schedule", "timezone"}
)
DeviceSettings = create_model(
    "DeviceSettings",
    __base__=Body,
    __doc__="The parts of DeviceConfig an administrator sets (the rest is managed).",
    **{
        name: (
            (Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation) | None,
            Field(None, description=f.description),
        )
        for name, f in DeviceConfig.model_fields.items()
        if name not in MANAGED_DEVICE_FIELDS
    },
)


class DeviceProvision(Body):
    id: Id = Field(description="Device id, unique in the unit.")
    room: Id = Field(description="Room it watches.")
    name: Text | None = None
    settings: DeviceSettings = Field(default_factory=DeviceSettings)


class DeviceUpdate(Body):
    name: Text | None = None
    settings: DeviceSettings | None = None


class DeviceReplace(Body):
    new_id: Id = Field(description="Id of the replacement device.")
    name: Text | None = None


class DeviceProvisioned(Body):
    device: DeviceView
    claim_code: str = Field(description="One-time code the device uses to claim (shown once).")
    claim_expires_at: datetime


class ClaimRequest(Body):
    code: Annotated[str, StringConstraints(min_length=4, max_length=64)] = Field(
        description="Claim code shown when the device was provisioned."
    )


class ClaimResponse(Body):
    site: str
    room: str
    device: str
    topic_root: str
    mqtt_url: str = Field(description="Broker URL for the device.")
    mqtt_username: str
    mqtt_password: str = Field(description="Shown once; only a hash is kept.")


class AuditEntry(Body):
    id: int
    at: datetime
    username: str
    role: str
    action: str
    purpose: str
    what: str
    site: str | None = None
    room: str | None = None
    detail: Any = None


class AuditPage(Body):
    entries: list[AuditEntry]
    next_before: int | None = Field(None, description="Pass as `before` for older entries.")


class ExportDataset(Body):
    name: str
    description: str


class ExportIndex(Body):
    datasets: list[ExportDataset]


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


# -- tablet app: board, rounds, visits, silences, practice (alerting issue) --------------

Outcome = Literal["needed_help", "false_alarm", "not_needed"]


class ResolveRequest(Body):
    outcome: Outcome = Field(description="Was the alert real? Needed for every resolve by staff.")


class RoundEntry(Body):
    id: uuid.UUID = Field(description="Round entry id.")
    site: str = Field(description="Unit.")
    room: str = Field(description="Room id.")
    resident_id: uuid.UUID = Field(description="Resident.")
    resident: str | None = Field(None, description="Resident's name as staff know it.")
    scheduled_at: datetime = Field(description="The agreed tillsyn time.")
    mode: Literal["digital", "physical"] = Field(description="Agreed as digital or physical.")
    produced_at: datetime = Field(description="When the entry was made.")
    observed_state: RoomStateName | None = Field(None, description="Room state it was based on.")
    observed_since: datetime | None = Field(None, description="Since when that state held.")
    confidence: float | None = Field(None, description="Confidence of that state.")
    summary: str = Field(description="What staff read, e.g. 'I sängen, lugn sedan 01:42'.")
    decision: Literal["digital_ok", "physical_needed"] = Field(
        description="Digital check enough, or a physical visit needed."
    )
    reason: str | None = Field(None, description="Why (code, e.g. in_bed_calm, no_data).")
    confirmed_by: str | None = Field(None, description="Who confirmed it.")
    confirmed_at: datetime | None = Field(None, description="When.")
    practice: bool = Field(False, description="Practice entry (never counted).")
    late: bool = Field(False, description="Made after its time (the service was down).")


class RoundList(Body):
    entries: list[RoundEntry] = Field(description="Round entries, by time and room.")


class RoundConfirm(Body):
    ids: list[uuid.UUID] = Field(min_length=1, max_length=500, description="Entries to confirm.")


class Confirmed(Body):
    confirmed: int = Field(description="How many entries were confirmed now.")


class VisitStart(Body):
    room: str = Field(min_length=1, max_length=64, description="Room entered.")
    reason: Literal["round", "alert", "planned", "unplanned"] = Field(description="Why.")
    round_id: uuid.UUID | None = Field(None, description="The round entry this visit answers.")
    alert_id: uuid.UUID | None = Field(None, description="The alert this visit answers.")


class Visit(Body):
    id: uuid.UUID = Field(description="Visit id.")
    site: str = Field(description="Unit.")
    room: str = Field(description="Room.")
    resident_id: uuid.UUID | None = Field(None, description="Resident of the room then.")
    started_at: datetime = Field(description="Entered the room.")
    ended_at: datetime | None = Field(None, description="Left the room.")
    by_user: str = Field(description="Staff member.")
    reason: Literal["round", "alert", "planned", "unplanned"] = Field(description="Why.")
    round_id: uuid.UUID | None = Field(None, description="Round entry answered.")
    alert_id: uuid.UUID | None = Field(None, description="Alert answered.")
    practice: bool = Field(False, description="Practice (never counted).")


class VisitList(Body):
    visits: list[Visit] = Field(description="Visits, newest first.")


class SilenceRequest(Body):
    room: str | None = Field(None, max_length=64, description="Room; none = every room.")
    kinds: list[str] = Field(
        default_factory=list, max_length=20, description="Alert kinds; empty = every kind."
    )
    minutes: int = Field(ge=1, le=720, description="How long.")
    reason: str = Field(min_length=3, max_length=200, description="Why (kept in the log).")


class Silence(Body):
    id: uuid.UUID = Field(description="Silence id.")
    site: str = Field(description="Unit.")
    room: str | None = Field(None, description="Room; none = every room.")
    kinds: list[str] = Field(description="Kinds; empty = every kind.")
    starts_at: datetime = Field(description="From.")
    ends_at: datetime = Field(description="Until.")
    reason: str = Field(description="Why.")
    created_by: str = Field(description="Who.")


class SilenceList(Body):
    silences: list[Silence] = Field(description="Active silences.")


class PracticeAlertRequest(Body):
    room: RoomName = Field(description="Room for the practice alert.")
    kind: Literal["possible_fall", "out_of_bed", "left_room", "in_bathroom", "no_motion"] = Field(
        "possible_fall", description="Which alert to practise."
    )
    priority: Literal["high", "medium", "low"] = Field("high", description="Its priority.")


class PracticeStarted(Body):
    alert_id: uuid.UUID = Field(description="Id the practice alert will have.")


# -- shared tablets -----------------------------------------------------------------------


GroupName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")]
RoomName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]


class TabletEnroll(Body):
    name: str = Field(min_length=1, max_length=64, description="Name, e.g. 'Natt A'.")
    site: str | None = Field(None, description="Unit; default the manager's first.")
    groups: list[GroupName] = Field(
        default_factory=list, max_length=10, description="Escalation groups, e.g. backup."
    )


class EnrollCode(Body):
    code: str = Field(min_length=6, max_length=32, description="One-time enrollment code.")


class EnrollmentCode(Body):
    code: str = Field(description="Type it on the tablet within its lifetime.")
    expires_at: datetime = Field(description="Valid until.")


class StaffButton(Body):
    username: str = Field(description="User name.")
    display_name: str = Field(description="Name on the button.")
    recent: bool = Field(description="Signed in on this tablet lately (shown first).")


class TabletInfo(Body):
    enrolled: bool = Field(description="This browser is an enrolled shared tablet.")
    id: uuid.UUID | None = Field(None, description="Tablet id.")
    name: str | None = Field(None, description="Tablet name.")
    site: str | None = Field(None, description="Unit the tablet serves.")
    groups: list[str] = Field(default_factory=list, description="Escalation groups.")
    auto_lock_s: float = Field(description="Lock after this long without a touch (s).")
    staff: list[StaffButton] = Field(default_factory=list, description="Staff with a PIN.")
    vapid_public_key: str | None = Field(None, description="Web Push key; none = off.")


class TabletSummary(Body):
    id: uuid.UUID = Field(description="Tablet id.")
    name: str = Field(description="Name.")
    site: str = Field(description="Unit.")
    groups: list[str] = Field(description="Escalation groups.")
    enrolled_at: datetime = Field(description="Enrolled.")
    last_seen_at: datetime | None = Field(None, description="Last request.")


class TabletList(Body):
    tablets: list[TabletSummary] = Field(description="Enrolled tablets.")


class PinSet(Body):
    password: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Current password; may be left out within 15 minutes of a single sign-on.",
    )
    pin: str = Field(pattern=r"^[0-9]{4,12}$", description="New PIN, 4–12 digits.")


class PinSignIn(Body):
    username: str = Field(min_length=1, max_length=64, description="Staff member.")
    pin: str = Field(pattern=r"^[0-9]{4,12}$", description="Personal PIN.")


class PushSubscribe(Body):
    endpoint: str = Field(pattern=r"^https?://", max_length=1000, description="Push endpoint.")
    p256dh: str = Field(min_length=10, max_length=200, description="Client public key.")
    auth: str = Field(min_length=8, max_length=100, description="Client auth secret.")


# --- Evaluation (the report itself is defined once, in nattillsyn.evaluation.model) --------


class UnitRef(Body):
    site: str = Field(description="Unit (site) id.")
    name: str = Field(description="Unit name.")


class UnitList(Body):
    units: list[UnitRef] = Field(description="Units the signed-in user may evaluate.")


class BaselineUpload(Body):
    csv: str = Field(
        min_length=1,
        max_length=900_000,
        description="The baseline file's text in the documented CSV format (docs/evaluation.md).",
    )
    source: str | None = Field(None, max_length=200, description="File name, for the record.")


class BaselineImport(Body):
    id: uuid.UUID = Field(description="Import id.")
    imported_at: datetime = Field(description="When it was imported.")
    imported_by: str = Field(description="Who imported it.")
    source: str | None = Field(None, description="File name given.")
    rows: int = Field(description="Rows in the import.")


class BaselineOverview(Body):
    site: str = Field(description="Unit id.")
    first_night: datetime_date | None = Field(None, description="First baseline night stored.")
    last_night: datetime_date | None = Field(None, description="Last baseline night stored.")
    nights: int = Field(description="Resident-nights stored.")
    imports: list[BaselineImport] = Field(description="Imports, newest first.")
