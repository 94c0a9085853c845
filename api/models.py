"""The HTTP contract: request and response bodies of the api (OpenAPI is built from these).

Alerts travel as the MQTT contract's `Alert` model; nothing here re-declares it.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Evaluation figures are defined once in nattillsyn.evaluation.model; re-exported here.
from nattillsyn.evaluation.model import BaselineImportResult as BaselineImportResult
from nattillsyn.evaluation.model import Report as Report
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


class Snapshot(Body):
    type: Literal["snapshot"] = "snapshot"
    rooms: list[RoomView] = Field(description="Every room of the site.")
    alerts: list[Alert] = Field(description="Open alerts and those resolved in the last hour.")


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
    first_night: date | None = Field(None, description="First baseline night stored.")
    last_night: date | None = Field(None, description="Last baseline night stored.")
    nights: int = Field(description="Resident-nights stored.")
    imports: list[BaselineImport] = Field(description="Imports, newest first.")
