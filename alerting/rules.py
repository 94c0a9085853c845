"""Which observations raise which alert, at which priority; pure.

The walking skeleton knows two rules; per-resident rules and presets come later.
"""

from __future__ import annotations

from dataclasses import dataclass

from nattillsyn.protocol import AlertPriority, Availability, Event, EventPhase, EventType


@dataclass(frozen=True)
class Trigger:
    kind: str
    priority: AlertPriority
    title: str  # Swedish first: staff read it on the tablet; {room} = the room's name


def for_event(event: Event) -> Trigger | None:
    if event.type is EventType.possible_fall and event.phase is EventPhase.new:
        return Trigger("possible_fall", AlertPriority.high, "Möjligt fall – {room}")
    return None


def for_availability(av: Availability) -> Trigger | None:
    if av.state == "offline":
        return Trigger(
            "device_offline",
            AlertPriority.medium,
            "Digital tillsyn ej tillgänglig – {room}: fysisk tillsyn behövs",
        )
    return None
