"""Alerts for staff, and the actions staff take on them."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from .base import Message, Name

Outcome = Literal["needed_help", "false_alarm", "not_needed"]


class AlertPriority(StrEnum):
    """IEC 60601-1-8 priorities."""

    high = "high"
    medium = "medium"
    low = "low"
    info = "info"


class AlertStatus(StrEnum):
    firing = "firing"
    acknowledged = "acknowledged"
    resolved = "resolved"


class Alert(Message):
    """The current state of one alert, published on each change."""

    alert_id: uuid.UUID = Field(description="Stable id of the alert.")
    site: Name = Field(description="Site id.")
    room: Name = Field(description="Room id.")
    device: Name | None = Field(None, description="Device that caused it, if any.")
    kind: str = Field(max_length=64, description="Rule that fired, e.g. possible_fall.")
    priority: AlertPriority = Field(description="high / medium / low / info.")
    status: AlertStatus = Field(description="firing / acknowledged / resolved.")
    title: str = Field(max_length=200, description="Short text for staff (Swedish).")
    started: AwareDatetime = Field(description="When the alert began.")
    acknowledged_at: AwareDatetime | None = Field(None, description="When it was acknowledged.")
    acknowledged_by: str | None = Field(None, max_length=64, description="Who acknowledged it.")
    resolved_at: AwareDatetime | None = Field(None, description="When it was resolved.")
    source_event: uuid.UUID | None = Field(None, description="event_id of the triggering event.")
    # Added within contract v1 (optional, so older consumers are unaffected).
    resolved_by: str | None = Field(
        None, max_length=64, description="Who resolved it (`system` when its cause cleared)."
    )
    outcome: Outcome | None = Field(None, description="Outcome given on resolve.")
    practice: bool = Field(False, description="A training alert: never counted, never paged out.")
    occurrences: int = Field(
        1, ge=1, description="How often its cause was seen while open (de-duplicated)."
    )
    escalation_step: int = Field(0, ge=0, description="Escalation steps reached (0 = the unit).")
    targets: list[str] = Field(
        default_factory=list,
        description="Who has been notified: `unit`, `group:<name>`, `notifier:<name>`.",
    )
    silenced: bool = Field(False, description="Matched by a silence: recorded, not sounded.")
    sound: bool = Field(
        False, description="Clients sound and vibrate for this publication (new/repeat/…)."
    )
    notify: Literal["new", "repeat", "escalate", "resound"] | None = Field(
        None, description="Why this publication sounds."
    )
    rev: int | None = Field(
        None, ge=0, description="Number of the last stored change (replay cursor for clients)."
    )


class AlertAction(Message):
    """Staff action on `…/alert/set`, answered by the next Alert publication.

    `raise_practice` asks alerting to raise a training alert with the given `alert_id`
    (a unit manager's practice run); it is marked as practice everywhere.
    """

    alert_id: uuid.UUID = Field(description="Alert acted on (or to raise, for raise_practice).")
    action: Literal["acknowledge", "resolve", "raise_practice"] = Field(description="What to do.")
    by: str = Field(min_length=1, max_length=64, description="User id of the staff member.")
    outcome: Outcome | None = Field(None, description="On resolve: was the alert real?")
    kind: str | None = Field(
        None, max_length=64, description="raise_practice: which rule to simulate."
    )
    priority: AlertPriority | None = Field(None, description="raise_practice: its priority.")
