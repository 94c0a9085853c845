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


class DeviceConfig(Message):
    """Retained on `…/config/set`; the device applies it and reports `…/config/state`."""

    version: int = Field(ge=1, description="Config version, grows with each change.")
    monitoring: bool = Field(True, description="Analysis enabled (false: paused or no consent).")
    fps: float = Field(5.0, gt=0, le=60, description="Analysed frames per second.")
    fall_confirm_s: float = Field(
        30.0, ge=0, le=600, description="Stillness before a possible fall (s)."
    )
    heartbeat_s: float = Field(15.0, gt=0, le=3600, description="Heartbeat interval (s).")
    zones: list[Zone] = Field(default_factory=list, max_length=32, description="Zones of the room.")


class ConfigState(DeviceMessage):
    """Retained; which config version the device runs, or why it refused one."""

    version: int = Field(ge=0, description="Applied config version (0: none yet).")
    error: str | None = Field(None, max_length=500, description="Why the last config was refused.")
