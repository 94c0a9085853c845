"""The night-staff board: rooms and alerts, alert actions, silences and practice alerts.

Alerts travel as the MQTT contract's `Alert` model; nothing here re-declares it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from nattillsyn.protocol import Alert, RoomStateName

from .common import Body, Id

Outcome = Literal["needed_help", "false_alarm", "not_needed"]


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
    outcome: Outcome | None = Field(None, description="On resolve: was the alert real?")


class Accepted(Body):
    accepted: bool = Field(True, description="The action was passed to alerting.")
    action_id: uuid.UUID = Field(description="Id of the AlertAction message sent.")


class ResolveRequest(Body):
    outcome: Outcome = Field(description="Was the alert real? Needed for every resolve by staff.")


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
    room: Id = Field(description="Room for the practice alert.")
    kind: Literal["possible_fall", "out_of_bed", "left_room", "in_bathroom", "no_motion"] = Field(
        "possible_fall", description="Which alert to practise."
    )
    priority: Literal["high", "medium", "low"] = Field("high", description="Its priority.")


class PracticeStarted(Body):
    alert_id: uuid.UUID = Field(description="Id the practice alert will have.")
