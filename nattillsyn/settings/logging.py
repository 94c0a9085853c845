"""Settings for logs."""

from typing import Literal

from pydantic import Field

from .base import Section


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    json_: bool | None = Field(
        None, alias="json", description="JSON lines; default: JSON unless stderr is a terminal."
    )
