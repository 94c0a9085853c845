"""Administration of the organisation: units, rooms, inclusion criteria, staff, change history."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from .audit import LogEntry
from .common import Body, Id, Key, Role, Text, TimeZone


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
    timezone: TimeZone = "Europe/Stockholm"


class UnitUpdate(Body):
    name: Text | None = None
    kind: Literal["care_home", "home_care"] | None = None
    timezone: TimeZone | None = None
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
    key: Key = Field(description="Stable key of the criterion.")
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


class ChangeEntry(LogEntry):
    entity: str
    entity_id: str
    change: str
    before: Any = None
    after: Any = None


class ChangeList(Body):
    changes: list[ChangeEntry]
