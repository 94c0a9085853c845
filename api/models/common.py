"""What every body shares: the strict base model, problem details, and constrained strings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(Body):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", description="Problem type URI.")
    title: str = Field(description="Short summary.")
    status: int = Field(description="HTTP status code.")
    detail: str | None = Field(None, description="Explanation of this occurrence.")


Role = Literal["night_staff", "unit_manager", "evaluator", "sysadmin"]
# Ids of units, rooms and devices: they appear in MQTT topics.
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
RoomName = Id
Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Note = Annotated[str, StringConstraints(max_length=2000)]
TimeZone = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_\-+]+)*$")]
