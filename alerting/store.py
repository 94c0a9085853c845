"""Alert persistence: the `alerts` table holds the current state, `alert_history` each change."""

from __future__ import annotations

import uuid

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from nattillsyn.protocol import Alert

COLUMNS = (
    "id, site, room, device, kind, priority, status, title, started_at, acknowledged_at, "
    "acknowledged_by, resolved_at, source_event"
)


def _to_alert(row: dict) -> Alert:
    return Alert(
        alert_id=row["id"],
        site=row["site"],
        room=row["room"],
        device=row["device"],
        kind=row["kind"],
        priority=row["priority"],
        status=row["status"],
        title=row["title"],
        started=row["started_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        resolved_at=row["resolved_at"],
        source_event=row["source_event"],
    )


async def insert(conn: AsyncConnection, alert: Alert) -> bool:
    """Store a new alert; False if this source event already raised one (redelivery)."""
    async with conn.transaction():
        cur = await conn.execute(
            f"""INSERT INTO alerts ({COLUMNS}) VALUES
                (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT DO NOTHING""",
            (
                alert.alert_id, alert.site, alert.room, alert.device, alert.kind,
                alert.priority.value, alert.status.value, alert.title, alert.started,
                alert.acknowledged_at, alert.acknowledged_by, alert.resolved_at, alert.source_event,
            ),
        )  # fmt: skip
        if cur.rowcount == 0:
            return False
        await conn.execute(
            "INSERT INTO alert_history (alert_id, ts, status) VALUES (%s, %s, %s)",
            (alert.alert_id, alert.started, alert.status.value),
        )
        return True


async def update(
    conn: AsyncConnection, alert: Alert, by: str | None, outcome: str | None = None
) -> None:
    async with conn.transaction():
        await conn.execute(
            """UPDATE alerts SET status = %s, acknowledged_at = %s, acknowledged_by = %s,
                   resolved_at = %s, resolved_by = CASE WHEN %s = 'resolved' THEN %s END,
                   outcome = coalesce(%s, outcome), updated_at = now()
               WHERE id = %s""",
            (
                alert.status.value, alert.acknowledged_at, alert.acknowledged_by,
                alert.resolved_at, alert.status.value, by, outcome, alert.alert_id,
            ),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO alert_history (alert_id, status, by_user, note) VALUES (%s, %s, %s, %s)",
            (alert.alert_id, alert.status.value, by, outcome),
        )


async def get(conn: AsyncConnection, alert_id: uuid.UUID) -> Alert | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {COLUMNS} FROM alerts WHERE id = %s", (alert_id,))
        row = await cur.fetchone()
    return _to_alert(row) if row else None


async def open_alert(
    conn: AsyncConnection, site: str, room: str, kind: str, device: str | None = None
) -> Alert | None:
    """The unresolved alert of this kind in this room (one per room and kind: de-duplication)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {COLUMNS} FROM alerts
                WHERE site = %s AND room = %s AND kind = %s AND status <> 'resolved'
                  AND (%s::text IS NULL OR device = %s)
                ORDER BY started_at DESC LIMIT 1""",
            (site, room, kind, device, device),
        )
        row = await cur.fetchone()
    return _to_alert(row) if row else None


async def firing(conn: AsyncConnection) -> list[Alert]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {COLUMNS} FROM alerts WHERE status = 'firing' ORDER BY started_at"
        )
        return [_to_alert(r) for r in await cur.fetchall()]


async def for_board(conn: AsyncConnection, site: str, resolved_within_s: int = 3600) -> list[Alert]:
    """Open alerts of a site and those resolved lately, newest first (the tablet's list)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {COLUMNS} FROM alerts
                WHERE site = %s AND (status <> 'resolved'
                      OR resolved_at > now() - make_interval(secs => %s))
                ORDER BY started_at DESC LIMIT 200""",
            (site, resolved_within_s),
        )
        return [_to_alert(r) for r in await cur.fetchall()]


async def room_name(conn: AsyncConnection, site: str, room: str) -> str:
    """The name staff know a room by (its id if it is not registered)."""
    cur = await conn.execute("SELECT name FROM rooms WHERE site_id = %s AND id = %s", (site, room))
    row = await cur.fetchone()
    return row[0] if row else room
