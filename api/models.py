"""The HTTP contract: request and response bodies of the api (OpenAPI is built from these).

Alerts travel as the MQTT contract's `Alert` model; nothing here re-declares it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from nattillsyn.protocol import Alert, RoomStateName


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


class PresetCatalog(Body):
    model_config = ConfigDict(extra="allow")

    default: str = Field(description="Preset of a new resident.")


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
    password: str = Field(min_length=1, max_length=256, description="Current password.")
    pin: str = Field(pattern=r"^[0-9]{4,12}$", description="New PIN, 4–12 digits.")


class PinSignIn(Body):
    username: str = Field(min_length=1, max_length=64, description="Staff member.")
    pin: str = Field(pattern=r"^[0-9]{4,12}$", description="Personal PIN.")


class PushSubscribe(Body):
    endpoint: str = Field(pattern=r"^https?://", max_length=1000, description="Push endpoint.")
    p256dh: str = Field(min_length=10, max_length=200, description="Client public key.")
    auth: str = Field(min_length=8, max_length=100, description="Client auth secret.")
