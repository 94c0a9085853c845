"""Identifiers generated at the source: UUIDv7 (time-ordered, RFC 9562)."""

from __future__ import annotations

import uuid

import uuid6


def new_id() -> uuid.UUID:
    """A new time-ordered UUIDv7 as a standard-library UUID."""
    return uuid.UUID(int=uuid6.uuid7().int)
