"""The board's rooms and the silences staff set on alerts."""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from . import fetch_all, fetch_one, fetch_value

SILENCE_COLUMNS = "id, site, room, kinds, starts_at, ends_at, reason, created_by"


async def rooms(conn: AsyncConnection, site: str) -> list[dict]:
    """Every room of the unit with its last state, its device and its active resident."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT r.id, r.name, s.state, s.since, s.ts AS updated,
                      d.availability, d.last_heartbeat, res.display_name,
                      monitoring_active(r.site_id, r.id, now()) AS monitored
               FROM rooms r
               LEFT JOIN LATERAL (
                   SELECT state, since, ts FROM room_states
                   WHERE site = r.site_id AND room = r.id ORDER BY ts DESC LIMIT 1) s ON true
               LEFT JOIN LATERAL (
                   SELECT availability, last_heartbeat FROM devices
                   WHERE site_id = r.site_id AND room_id = r.id
                   ORDER BY last_seen DESC NULLS LAST LIMIT 1) d ON true
               LEFT JOIN residents res ON res.site_id = r.site_id AND res.room_id = r.id
                    AND res.active
               WHERE r.site_id = %s ORDER BY r.id""",
            (site,),
        )
        return await cur.fetchall()


async def insert_silence(
    conn: AsyncConnection,
    site: str,
    room: str | None,
    kinds: list[str],
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    by: str,
) -> tuple:
    """The new silence's row (SILENCE_COLUMNS)."""
    return await fetch_one(
        conn,
        f"""INSERT INTO alert_silences (site, room, kinds, starts_at, ends_at, reason, created_by)
            VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {SILENCE_COLUMNS}""",
        (site, room, kinds, starts_at, ends_at, reason, by),
    )


async def active_silences(conn: AsyncConnection, site: str) -> list[tuple]:
    return await fetch_all(
        conn,
        f"""SELECT {SILENCE_COLUMNS} FROM alert_silences
            WHERE site = %s AND ends_at > now() AND ended_by IS NULL ORDER BY ends_at""",
        (site,),
    )


async def silence_site(conn: AsyncConnection, silence_id: str) -> str | None:
    sql = "SELECT site FROM alert_silences WHERE id::text = %s"
    return await fetch_value(conn, sql, (silence_id,))


async def end_silence(conn: AsyncConnection, silence_id: str, by: str) -> None:
    await conn.execute(
        "UPDATE alert_silences SET ended_by = %s, ends_at = least(ends_at, now() + "
        "interval '1 millisecond') WHERE id::text = %s",
        (by, silence_id),
    )
