"""Shared tablets: enrollment, staff sign-in with a PIN, Web Push subscriptions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from .common import Body

GroupName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")]


class TabletEnroll(Body):
    name: str = Field(min_length=1, max_length=64, description="Name, e.g. 'Natt A'.")
    site: str | None = Field(None, description="Unit; default the manager's first.")
    groups: list[GroupName] = Field(
        default_factory=list, max_length=10, description="Escalation groups, e.g. backup."
    )


class EnrollCode(Body):
    code: str = Field(min_length=6, max_length=32, description="One-time enrollment code.")


class EnrollmentCode(Body):
    code: str = Field(description="Type it on the tablet within its lifetime.")
    expires_at: datetime = Field(description="Valid until.")


class StaffButton(Body):
    username: str = Field(description="User name.")
    display_name: str = Field(description="Name on the button.")
    recent: bool = Field(description="Signed in on this tablet lately (shown first).")


class TabletInfo(Body):
    enrolled: bool = Field(description="This browser is an enrolled shared tablet.")
    id: uuid.UUID | None = Field(None, description="Tablet id.")
    name: str | None = Field(None, description="Tablet name.")
    site: str | None = Field(None, description="Unit the tablet serves.")
    groups: list[str] = Field(default_factory=list, description="Escalation groups.")
    auto_lock_s: float = Field(description="Lock after this long without a touch (s).")
    staff: list[StaffButton] = Field(default_factory=list, description="Staff with a PIN.")
    vapid_public_key: str | None = Field(None, description="Web Push key; none = off.")


class TabletSummary(Body):
    id: uuid.UUID = Field(description="Tablet id.")
    name: str = Field(description="Name.")
    site: str = Field(description="Unit.")
    groups: list[str] = Field(description="Escalation groups.")
    enrolled_at: datetime = Field(description="Enrolled.")
    last_seen_at: datetime | None = Field(None, description="Last request.")


class TabletList(Body):
    tablets: list[TabletSummary] = Field(description="Enrolled tablets.")


class PinSet(Body):
    password: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Current password; may be left out within 15 minutes of a single sign-on.",
    )
    pin: str = Field(pattern=r"^[0-9]{4,12}$", description="New PIN, 4–12 digits.")


class PinSignIn(Body):
    username: str = Field(min_length=1, max_length=64, description="Staff member.")
    pin: str = Field(pattern=r"^[0-9]{4,12}$", description="Personal PIN.")


class PushSubscribe(Body):
    endpoint: str = Field(pattern=r"^https?://", max_length=1000, description="Push endpoint.")
    p256dh: str = Field(min_length=10, max_length=200, description="Client public key.")
    auth: str = Field(min_length=8, max_length=100, description="Client auth secret.")
