"""What the room analysis gives the agent: state changes and events (source-clock seconds)."""

from __future__ import annotations

from dataclasses import dataclass

from nattillsyn.protocol import EventPhase, EventType, RoomStateName

from .detector import Box


@dataclass(frozen=True)
class StateChange:
    state: RoomStateName
    since: float
    confidence: float
    motion: float = 0.0
    zone: str | None = None


@dataclass(frozen=True)
class EventOut:
    key: str  # one key per event lifetime; the agent gives it an event_id
    type: EventType
    phase: EventPhase
    start: float
    t: float
    score: float = 0.0
    box: Box | None = None
    zone: str | None = None


Output = StateChange | EventOut
