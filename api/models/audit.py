"""The access log and data exports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from .common import Body


class LogEntry(Body):
    """What the access log and the change history both record: who, in what role, when."""

    id: int
    at: datetime
    username: str
    role: str


class AuditEntry(LogEntry):
    action: str
    purpose: str
    what: str
    site: str | None = None
    room: str | None = None
    detail: Any = None


class AuditPage(Body):
    entries: list[AuditEntry]
    next_before: int | None = Field(None, description="Pass as `before` for older entries.")


class ExportDataset(Body):
    name: str
    description: str


class ExportIndex(Body):
    datasets: list[ExportDataset]
