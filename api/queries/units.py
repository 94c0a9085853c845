"""Whether a unit or a room exists (handlers answer 404 or 422 when not)."""

from __future__ import annotations

from psycopg import AsyncConnection

from . import fetch_value


async def site_exists(conn: AsyncConnection, site: str) -> bool:
    return await fetch_value(conn, "SELECT true FROM sites WHERE id = %s", (site,)) is not None


async def room_exists(conn: AsyncConnection, site: str, room: str) -> bool:
    sql = "SELECT true FROM rooms WHERE site_id = %s AND id = %s"
    return await fetch_value(conn, sql, (site, room)) is not None
