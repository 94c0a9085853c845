"""Request/response to a device with a correlation id."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import Field

from .base import DeviceMessage, Message


class Command(Message):
    """A request on `…/command`; the answer comes on `…/command/response`."""

    correlation_id: uuid.UUID = Field(description="Echoed in the response.")
    command: Literal["ping", "restart", "publish_state", "zone_map"] = Field(
        description="What to do."
    )
    args: dict[str, Any] = Field(default_factory=dict, description="Command arguments.")


class CommandResponse(DeviceMessage):
    correlation_id: uuid.UUID = Field(description="Correlation id of the request.")
    ok: bool = Field(description="Whether the command succeeded.")
    result: dict[str, Any] = Field(default_factory=dict, description="Command result.")
    error: str | None = Field(None, max_length=500, description="Why it failed.")
