"""Accounts made just in time for people who sign in through the organisation's provider."""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import AsyncConnection

from . import fetch_one, fetch_value


async def deactivate(conn: AsyncConnection, provider: str, subject: str) -> str | None:
    """Deactivate the account of (provider, subject); its id, None if there is none."""
    user_id = await fetch_value(
        conn,
        "UPDATE users SET active = false, updated_at = now() "
        "WHERE auth_provider = %s AND external_subject = %s RETURNING id",
        (provider, subject),
    )
    return None if user_id is None else str(user_id)


async def find(conn: AsyncConnection, provider: str, subject: str) -> tuple | None:
    """(id, username, active, role) of the account of (provider, subject)."""
    return await fetch_one(
        conn,
        "SELECT id, username, active, role FROM users "
        "WHERE auth_provider = %s AND external_subject = %s",
        (provider, subject),
    )


async def username_taken(conn: AsyncConnection, username: str) -> bool:
    sql = "SELECT true FROM users WHERE username = %s"
    return await fetch_value(conn, sql, (username,)) is not None


async def create(
    conn: AsyncConnection, username: str, display: str, role: str, provider: str, subject: str
) -> str:
    """A new account without a password (it signs in only through its provider)."""
    user_id = await fetch_value(
        conn,
        """INSERT INTO users (username, display_name, role, password_hash, auth_provider,
                              external_subject)
           VALUES (%s, %s, %s, '!', %s, %s) RETURNING id""",
        (username, display, role, provider, subject),
    )
    return str(user_id)


async def update(conn: AsyncConnection, user_id: str, display: str, role: str) -> None:
    """Name and role as the provider says now; the account is active again."""
    await conn.execute(
        "UPDATE users SET display_name = %s, role = %s, active = true, updated_at = now() "
        "WHERE id = %s",
        (display, role, user_id),
    )


async def sites(conn: AsyncConnection, user_id: str) -> list[str]:
    """The units the account belongs to, sorted."""
    found = await fetch_value(
        conn,
        "SELECT coalesce(array_agg(site_id ORDER BY site_id), '{}') FROM user_sites "
        "WHERE user_id = %s",
        (user_id,),
    )
    return list(found)


async def set_sites(conn: AsyncConnection, user_id: str, site_ids: Iterable[str]) -> None:
    """Exactly these units (those that exist)."""
    await conn.execute("DELETE FROM user_sites WHERE user_id = %s", (user_id,))
    for site in sorted(site_ids):
        await conn.execute(
            "INSERT INTO user_sites (user_id, site_id) SELECT %s, id FROM sites WHERE id = %s",
            (user_id, site),
        )
