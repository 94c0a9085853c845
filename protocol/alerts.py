"""Alerts for staff, and the actions staff take on them."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from .base import Message, Name


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


class AlertAction(Message):
    """Staff action on `…/alert/set`, answered by the next Alert publication."""

    alert_id: uuid.UUID = Field(description="Alert acted on.")
    action: Literal["acknowledge", "resolve"] = Field(description="What to do.")
    by: str = Field(min_length=1, max_length=64, description="User id of the staff member.")
    outcome: Literal["needed_help", "false_alarm", "not_needed"] | None = Field(
        None, description="On resolve: was the alert real?"
    )
