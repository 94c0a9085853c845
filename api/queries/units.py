"""Whether a unit or a room exists (handlers answer 404 or 422 when not)."""

from __future__ import annotations

from psycopg import AsyncConnection


async def site_exists(conn: AsyncConnection, site: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM sites WHERE id = %s", (site,))
    return await cur.fetchone() is not None


async def room_exists(conn: AsyncConnection, site: str, room: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM rooms WHERE site_id = %s AND id = %s", (site, room))
    return await cur.fetchone() is not None
