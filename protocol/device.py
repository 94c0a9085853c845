"""Device lifecycle: availability (last will), heartbeat, configuration."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import DeviceMessage, Message

Point = tuple[float, float]


class Availability(DeviceMessage):
    """Retained; `online` on connect, `offline` as the broker-published last will."""

    state: Literal["online", "offline"] = Field(description="online / offline.")


class Heartbeat(DeviceMessage):
    """Periodic proof of life with the agent's health."""

    uptime_s: float = Field(ge=0, description="Seconds since the agent started.")
    fps: float = Field(ge=0, description="Frames analysed per second, last interval.")
    agent_version: str = Field(max_length=32, description="Agent software version.")
    config_version: int = Field(0, ge=0, description="Version of the applied DeviceConfig.")
    queue: int = Field(0, ge=0, description="Messages waiting to be sent.")
    monitoring: bool = Field(True, description="Analysis running (false while paused).")


class ZoneKind(StrEnum):
    bed = "bed"
    floor = "floor"
    door = "door"
    chair = "chair"
    bathroom_door = "bathroom_door"
    ignore = "ignore"


class Zone(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, description="Zone name, unique in the room.")
    kind: ZoneKind = Field(description="What the zone is.")
    polygon: list[tuple[float, float]] = Field(
        min_length=3, max_length=64, description="Vertices in normalised image coordinates (0..1)."
    )


class MonitoringWindow(BaseModel):
    """A daily time window (device local time) in which monitoring may run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field(
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="Start, HH:MM local time."
    )
    end: str = Field(
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="End, HH:MM local time; before start means the next day (22:00-07:00).",
    )


class DeviceConfig(Message):
    """Retained on `…/config/set`; the device applies it and reports `…/config/state`.

    The same document is the room-configuration file (`<room>.json`) of a stand-alone
    device and of `nattillsyn edge evaluate --zones DIR`.
    """

    version: int = Field(ge=1, description="Config version, grows with each change.")
    monitoring: bool = Field(True, description="Analysis enabled (false: paused or no consent).")
    fps: float = Field(5.0, gt=0, le=60, description="Analysed frames per second.")
    fall_confirm_s: float = Field(
        30.0, ge=0, le=600, description="Stillness before a possible fall (s)."
    )
    heartbeat_s: float = Field(15.0, gt=0, le=3600, description="Heartbeat interval (s).")
    zones: list[Zone] = Field(default_factory=list, max_length=32, description="Zones of the room.")
    no_motion_s: float = Field(
        900.0,
        ge=10,
        le=86400,
        description="Present without any motion this long gives state no_motion (s).",
    )
    no_motion_in_bed: bool = Field(
        False, description="Whether a still person in bed also becomes no_motion (else: asleep)."
    )
    schedule: list[MonitoringWindow] = Field(
        default_factory=list,
        max_length=8,
        description="Daily windows in which monitoring may run, enforced on the device even "
        "when offline; empty: whenever `monitoring` is true.",
    )
    timezone: str = Field(
        "Europe/Stockholm", max_length=64, description="IANA time zone of the schedule."
    )


class ConfigState(DeviceMessage):
    """Retained; which config version the device runs, or why it refused one."""

    version: int = Field(ge=0, description="Applied config version (0: none yet).")
    error: str | None = Field(None, max_length=500, description="Why the last config was refused.")
