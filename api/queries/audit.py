"""The access log (`audit_log`): one insert for every reader and writer the api records."""

from __future__ import annotations

import json

from psycopg import AsyncConnection


async def log_access(
    conn: AsyncConnection,
    *,
    user_id: str | None,
    username: str,
    role: str,
    action: str,
    purpose: str,
    what: str,
    site: str | None = None,
    room: str | None = None,
    detail: dict | None = None,
) -> None:
    """One append-only row: who, when, why, what."""
    await conn.execute(
        """INSERT INTO audit_log (user_id, username, role, action, purpose, what, site, room,
                                  detail)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            user_id,
            username,
            role,
            action,
            purpose,
            what,
            site,
            room,
            json.dumps(detail, default=str) if detail else None,
        ),
    )
