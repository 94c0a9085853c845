"""What the edge observes: events (with phases) and the room state."""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import AwareDatetime, Field

from .base import DeviceMessage


class EventType(StrEnum):
    motion = "motion"
    possible_fall = "possible_fall"
    camera_covered = "camera_covered"
    camera_moved = "camera_moved"
    too_dark = "too_dark"


class EventPhase(StrEnum):
    new = "new"
    update = "update"
    end = "end"


class RoomStateName(StrEnum):
    unknown = "unknown"
    empty = "empty"
    in_bed = "in_bed"
    out_of_bed = "out_of_bed"
    in_chair = "in_chair"
    in_bathroom = "in_bathroom"
    on_floor = "on_floor"
    left_room = "left_room"
    no_motion = "no_motion"
    present = "present"
    paused = "paused"


class Event(DeviceMessage):
    """One observation with a lifetime: `new`, then `update`s, then `end`, all with one `event_id`."""

    event_id: uuid.UUID = Field(description="Id shared by all phases of one event.")
    type: EventType = Field(description="What was observed.")
    phase: EventPhase = Field(description="new / update / end.")
    start: AwareDatetime = Field(description="When the event began (source time).")
    end: AwareDatetime | None = Field(None, description="When it ended; set on phase end.")
    score: float = Field(0.0, ge=0, le=1, description="Strength or confidence, 0..1.")
    zone: str | None = Field(None, max_length=64, description="Zone the event is in, if known.")
    box: tuple[float, float, float, float] | None = Field(
        None, description="Bounding box x, y, w, h in normalised image coordinates (0..1)."
    )


class RoomState(DeviceMessage):
    """Retained room state, published on change and periodically."""

    state: RoomStateName = Field(description="What the room is in now.")
    since: AwareDatetime = Field(description="When this state began.")
    confidence: float = Field(ge=0, le=1, description="Confidence in the state, 0..1.")
    motion: float = Field(0.0, ge=0, le=1, description="Share of the image moving (last second).")
