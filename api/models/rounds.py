"""Digital rounds and visits as the tablet app shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from nattillsyn.protocol import RoomStateName

from .common import Body

VisitReason = Literal["round", "alert", "planned", "unplanned"]


class RoundEntry(Body):
    id: uuid.UUID = Field(description="Round entry id.")
    site: str = Field(description="Unit.")
    room: str = Field(description="Room id.")
    resident_id: uuid.UUID = Field(description="Resident.")
    resident: str | None = Field(None, description="Resident's name as staff know it.")
    scheduled_at: datetime = Field(description="The agreed tillsyn time.")
    mode: Literal["digital", "physical"] = Field(description="Agreed as digital or physical.")
    produced_at: datetime = Field(description="When the entry was made.")
    observed_state: RoomStateName | None = Field(None, description="Room state it was based on.")
    observed_since: datetime | None = Field(None, description="Since when that state held.")
    confidence: float | None = Field(None, description="Confidence of that state.")
    summary: str = Field(description="What staff read, e.g. 'I sängen, lugn sedan 01:42'.")
    decision: Literal["digital_ok", "physical_needed"] = Field(
        description="Digital check enough, or a physical visit needed."
    )
    reason: str | None = Field(None, description="Why (code, e.g. in_bed_calm, no_data).")
    confirmed_by: str | None = Field(None, description="Who confirmed it.")
    confirmed_at: datetime | None = Field(None, description="When.")
    practice: bool = Field(False, description="Practice entry (never counted).")
    late: bool = Field(False, description="Made after its time (the service was down).")


class RoundList(Body):
    entries: list[RoundEntry] = Field(description="Round entries, by time and room.")


class RoundConfirm(Body):
    ids: list[uuid.UUID] = Field(min_length=1, max_length=500, description="Entries to confirm.")


class Confirmed(Body):
    confirmed: int = Field(description="How many entries were confirmed now.")


class VisitStart(Body):
    room: str = Field(min_length=1, max_length=64, description="Room entered.")
    reason: VisitReason = Field(description="Why.")
    round_id: uuid.UUID | None = Field(None, description="The round entry this visit answers.")
    alert_id: uuid.UUID | None = Field(None, description="The alert this visit answers.")


class Visit(Body):
    id: uuid.UUID = Field(description="Visit id.")
    site: str = Field(description="Unit.")
    room: str = Field(description="Room.")
    resident_id: uuid.UUID | None = Field(None, description="Resident of the room then.")
    started_at: datetime = Field(description="Entered the room.")
    ended_at: datetime | None = Field(None, description="Left the room.")
    by_user: str = Field(description="Staff member.")
    reason: VisitReason = Field(description="Why.")
    round_id: uuid.UUID | None = Field(None, description="Round entry answered.")
    alert_id: uuid.UUID | None = Field(None, description="Alert answered.")
    practice: bool = Field(False, description="Practice (never counted).")


class VisitList(Body):
    visits: list[Visit] = Field(description="Visits, newest first.")
