"""Envelope shared by every message: version, unique id and source timestamp."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from nattillsyn.ids import new_id

# Major version of the contract. A consumer rejects a message whose `v` it does
# not know (to the dead-letter table); fields added within a major are optional.
SCHEMA_VERSION = 1

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]

M = TypeVar("M", bound="Message")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Every payload: `v`, a unique `id` made at the source, and the source time `ts`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(SCHEMA_VERSION, description="Contract major version.")
    id: uuid.UUID = Field(
        default_factory=new_id, description="Unique message id (UUIDv7), made at the source."
    )
    ts: AwareDatetime = Field(default_factory=utcnow, description="Source timestamp (UTC).")


class DeviceMessage(Message):
    """A message published by a room device.

    `session` grows at every start of the agent and `seq` counts messages within a
    session, so a consumer sees gaps (lost messages) and replays (old sessions).
    """

    site: Name = Field(description="Site (care home) id.")
    room: Name = Field(description="Room id.")
    device: Name = Field(description="Device id.")
    session: int = Field(ge=0, description="Agent session: start time in ms since the epoch.")
    seq: int = Field(ge=0, description="Message number within the session, from 0.")


def encode(msg: Message) -> bytes:
    return msg.model_dump_json(exclude_none=True).encode()


def decode(model: type[M], payload: bytes | str) -> M:
    """Validate a payload against a model; raises pydantic.ValidationError."""
    return model.model_validate_json(payload)
