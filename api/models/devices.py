"""Administration of room devices: provisioning, settings, replacement, claiming."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, create_model

from nattillsyn.protocol import DeviceConfig

from .common import Body, Id, Text


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
