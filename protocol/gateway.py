"""Between a care-home gateway and the centre: health, the site's configuration replica,
and the upload of what happened on site while the centre was out of reach.

Site-level topics live under the reserved room `_site`: `<root>/<site>/_site/<kind>`.
"""

from __future__ import annotations

import uuid
from datetime import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .alerts import Alert
from .base import Message, Name


class GatewayMode(StrEnum):
    """Who alerts for the site's rooms."""

    normal = "normal"  # the centre; the gateway follows in standby
    fallback = "fallback"  # the gateway: the centre is out of reach
    handback = "handback"  # the link is back: the gateway uploads, then hands back


class GatewayStatus(Message):
    """Retained heartbeat of a site's gateway (`offline` as its last will)."""

    site: Name = Field(description="Site id.")
    gateway: Name = Field(description="Gateway id.")
    session: int = Field(ge=0, description="Gateway start time in ms since the epoch.")
    seq: int = Field(ge=0, description="Status number within the session.")
    state: Literal["online", "offline"] = Field(description="online / offline (last will).")
    mode: GatewayMode = Field(GatewayMode.normal, description="Who alerts for the site now.")
    mode_since: AwareDatetime | None = Field(None, description="When the mode began.")
    interval_s: float = Field(5.0, gt=0, le=3600, description="Seconds between heartbeats.")
    spool_messages: int = Field(0, ge=0, description="Site messages waiting for the centre.")
    spool_bytes: int = Field(0, ge=0, description="Bytes they take on the gateway's disk.")
    spool_limit_bytes: int = Field(0, ge=0, description="Disk bound of the spool.")
    spool_warn_since: AwareDatetime | None = Field(
        None, description="Since when the spool is above its warning level (None: below)."
    )
    dropped: int = Field(0, ge=0, description="Messages dropped by the spool policy (session).")
    version: str = Field("", max_length=32, description="Gateway software version.")


class CentreStatus(Message):
    """The central alerting is alive and in charge: sent to each gateway's site."""

    site: Name = Field(description="Site id.")
    interval_s: float = Field(5.0, gt=0, le=3600, description="Seconds between these.")
    suppressed: bool = Field(
        False, description="The centre leaves the site's rooms to its gateway (fallback)."
    )


# -- the site's configuration replica ---------------------------------------------------------


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteRow(_Row):
    id: Name
    name: str = Field(max_length=200)
    timezone: str = Field(max_length=64)


class RoomRow(_Row):
    id: Name
    name: str = Field(max_length=200)


class ResidentRow(_Row):
    """What alerting needs of a resident (no personal identity number is kept anywhere)."""

    id: uuid.UUID
    room_id: Name | None
    display_name: str = Field(max_length=200)
    pseudonym: str = Field(max_length=64)
    monitoring_active: bool
    active: bool
    monitor_from: time
    monitor_to: time
    risk_preset: str = Field(max_length=64)
    rule_overrides: dict[str, Any] = Field(default_factory=dict)


class TillsynTimeRow(_Row):
    resident_id: uuid.UUID
    at_time: time
    mode: Literal["digital", "physical"]


class PauseRow(_Row):
    id: uuid.UUID
    resident_id: uuid.UUID
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str | None = Field(None, max_length=500)


class SilenceRow(_Row):
    id: uuid.UUID
    room: Name | None
    kinds: list[str] = Field(default_factory=list)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str = Field(max_length=500)
    created_by: str = Field(max_length=64)
    practice: bool = False


class StaffRow(_Row):
    """A staff member of the site: sign-in on the gateway's tablet page while it alerts."""

    id: uuid.UUID
    username: str = Field(max_length=64)
    display_name: str = Field(max_length=200)
    role: Literal["night_staff", "unit_manager"]
    password_hash: str = Field(max_length=256)
    pin_hash: str | None = Field(None, max_length=256)


class TabletRow(_Row):
    id: uuid.UUID
    name: str = Field(max_length=200)
    token_hash: str = Field(max_length=128)
    groups: list[str] = Field(default_factory=list)


class SiteSnapshot(Message):
    """Retained on `<root>/<site>/_site/gateway/config`: what the gateway needs to alert for
    the site on its own. Published by the centre whenever it changes (and periodically)."""

    site: SiteRow
    digest: str = Field(max_length=64, description="SHA-256 of the content: changes with it.")
    rooms: list[RoomRow] = Field(default_factory=list)
    residents: list[ResidentRow] = Field(default_factory=list)
    tillsyn_times: list[TillsynTimeRow] = Field(default_factory=list)
    pauses: list[PauseRow] = Field(default_factory=list)
    silences: list[SilenceRow] = Field(default_factory=list)
    staff: list[StaffRow] = Field(default_factory=list)
    tablets: list[TabletRow] = Field(default_factory=list)


# -- upload of what happened on site -----------------------------------------------------------


class SyncAlert(_Row):
    """An alert as the gateway has it (its full current state)."""

    alert: Alert
    episode: str | None = Field(None, max_length=200)
    resident_id: uuid.UUID | None = None
    last_notified_at: AwareDatetime | None = None


class SyncHistory(_Row):
    alert_id: uuid.UUID
    seq: int = Field(ge=0, description="The gateway's own history number (idempotence).")
    ts: AwareDatetime
    status: Literal["firing", "acknowledged", "resolved"]
    by_user: str | None = Field(None, max_length=64)
    note: str | None = Field(None, max_length=500)


class SyncRound(_Row):
    id: uuid.UUID
    room: Name
    resident_id: uuid.UUID
    scheduled_at: AwareDatetime
    mode: Literal["digital", "physical"]
    produced_at: AwareDatetime
    observed_state: str | None = Field(None, max_length=64)
    observed_since: AwareDatetime | None = None
    confidence: float | None = None
    summary: str = Field(max_length=500)
    decision: Literal["digital_ok", "physical_needed"]
    reason: str | None = Field(None, max_length=64)
    confirmed_by: str | None = Field(None, max_length=64)
    confirmed_at: AwareDatetime | None = None
    late: bool = False
    practice: bool = False


class SyncVisit(_Row):
    id: uuid.UUID
    room: Name
    resident_id: uuid.UUID | None = None
    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    by_user: str = Field(max_length=64)
    reason: Literal["round", "alert", "planned", "unplanned"]
    round_id: uuid.UUID | None = None
    alert_id: uuid.UUID | None = None
    practice: bool = False


class SyncAudit(_Row):
    """One access-log row written on the gateway (loggkontroll stays complete)."""

    seq: int = Field(ge=0, description="The gateway's own row number (idempotence).")
    at: AwareDatetime
    user_id: uuid.UUID | None = None
    username: str = Field(max_length=64)
    role: str = Field(max_length=32)
    action: Literal["read", "change", "login", "logout", "export"]
    purpose: str = Field(max_length=200)
    what: str = Field(max_length=200)
    room: str | None = Field(None, max_length=64)
    detail: dict[str, Any] | None = None


class GatewaySync(Message):
    """A batch of what happened on site (alerts with their history, rounds, visits, access
    log), uploaded while handing back; answered on `gateway/sync/ack`. Idempotent: a batch
    sent twice changes nothing the second time."""

    site: Name
    gateway: Name
    correlation_id: uuid.UUID = Field(description="Echoed in the answer.")
    alerts: list[SyncAlert] = Field(default_factory=list)
    history: list[SyncHistory] = Field(default_factory=list)
    rounds: list[SyncRound] = Field(default_factory=list)
    visits: list[SyncVisit] = Field(default_factory=list)
    audit: list[SyncAudit] = Field(default_factory=list)


class GatewaySyncAck(Message):
    site: Name
    correlation_id: uuid.UUID
    ok: bool
    error: str | None = Field(None, max_length=500)
    stored: dict[str, int] = Field(default_factory=dict, description="Rows new to the centre.")


__all__ = [
    "CentreStatus",
    "GatewayMode",
    "GatewayStatus",
    "GatewaySync",
    "GatewaySyncAck",
    "SiteSnapshot",
    "SyncAlert",
    "SyncAudit",
    "SyncHistory",
    "SyncRound",
    "SyncVisit",
]
