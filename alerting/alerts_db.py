"""Alerts in the database, the only writer of tables `alerts` and `alert_history`.

`alerts` holds the current state, `alert_history` each change. Every change gets the next
`alert_history.seq`; it travels as the alert's `rev`, so a tablet that was disconnected asks
for everything after the last `rev` it saw. Alerting writes through these functions; the api
and the gateway read through them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from nattillsyn.protocol import Alert
from nattillsyn.protocol.gateway import SyncAlert, SyncHistory

# Alert field → the column expression it is read from.
_FIELDS = {
    "alert_id": "a.id",
    "site": "a.site",
    "room": "a.room",
    "device": "a.device",
    "kind": "a.kind",
    "priority": "a.priority",
    "status": "a.status",
    "title": "a.title",
    "started": "a.started_at",
    "acknowledged_at": "a.acknowledged_at",
    "acknowledged_by": "a.acknowledged_by",
    "resolved_at": "a.resolved_at",
    "resolved_by": "a.resolved_by",
    "outcome": "a.outcome",
    "source_event": "a.source_event",
    "practice": "a.practice",
    "occurrences": "a.occurrences",
    "escalation_step": "a.escalation_step",
    "targets": "coalesce(a.targets, '{}')",
    "silenced": "a.silenced",
    "rev": "(SELECT max(h.seq) FROM alert_history h WHERE h.alert_id = a.id)",
}
_COLUMNS = ", ".join(f"{expr} AS {name}" for name, expr in _FIELDS.items())
_SELECT = f"SELECT {_COLUMNS}, a.episode, a.last_notified_at, a.resident_id FROM alerts a"


@dataclass(frozen=True)
class Stored:
    alert: Alert
    episode: str | None
    last_notified_at: datetime | None
    resident_id: uuid.UUID | None


def _to_alert(row: dict) -> Alert:
    return Alert.model_validate({name: row[name] for name in _FIELDS})


def _stored(row: dict) -> Stored:
    return Stored(_to_alert(row), row["episode"], row["last_notified_at"], row["resident_id"])


async def _select(conn: AsyncConnection, where: str, args: tuple = ()) -> list[dict]:
    """Alert rows matching `where` (with its ORDER BY / LIMIT), aliased to Alert's fields."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{_SELECT} WHERE {where}", args)
        return await cur.fetchall()


async def _history(
    conn: AsyncConnection, alert: Alert, by: str | None, note: str | None, ts: datetime | None
) -> int:
    cur = await conn.execute(
        """INSERT INTO alert_history (alert_id, ts, status, by_user, note)
           VALUES (%s, coalesce(%s, now()), %s, %s, %s) RETURNING seq""",
        (alert.alert_id, ts, alert.status.value, by, note),
    )
    return (await cur.fetchone())[0]


async def history_note(conn: AsyncConnection, alert: Alert, note: str) -> None:
    """A note in the alert's history that does not change it (a notifier's outcome)."""
    await conn.execute(
        "INSERT INTO alert_history (alert_id, status, note) VALUES (%s, %s, %s)",
        (alert.alert_id, alert.status.value, note),
    )


class NotMonitored(Exception):
    """The room is not monitored at the moment of storing: nothing is raised."""


async def insert(
    conn: AsyncConnection,
    alert: Alert,
    *,
    episode: str | None = None,
    resident_id: uuid.UUID | None = None,
    notified_at: datetime | None = None,
    require_monitoring_at: datetime | None = None,
) -> Alert | None:
    """Store a new alert and its first history row in one statement (one round trip).

    None if this source event already raised one (redelivery). With
    `require_monitoring_at`, `monitoring_active` is checked in the same statement and
    NotMonitored raised when it does not hold: a pause that began a moment ago wins.
    """
    cur = await conn.execute(
        """WITH ok AS (
               SELECT %s::timestamptz IS NULL OR monitoring_active(%s, %s, %s::timestamptz) AS m
           ), ins AS (
               INSERT INTO alerts (id, site, room, device, kind, priority, status, title,
                   started_at, source_event, practice, resident_id, episode, last_seen_at,
                   escalation_step, targets, silenced, last_notified_at)
               SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s
               WHERE (SELECT m FROM ok)
               ON CONFLICT DO NOTHING RETURNING id, started_at, status
           ), hist AS (
               INSERT INTO alert_history (alert_id, ts, status, note)
               SELECT id, started_at, status, %s FROM ins RETURNING seq
           )
           SELECT (SELECT m FROM ok), (SELECT seq FROM hist)""",
        (
            require_monitoring_at, alert.site, alert.room, require_monitoring_at,
            alert.alert_id, alert.site, alert.room, alert.device, alert.kind,
            alert.priority.value, alert.status.value, alert.title, alert.started,
            alert.source_event, alert.practice, resident_id, episode, alert.started,
            alert.escalation_step, alert.targets, alert.silenced, notified_at,
            "practice" if alert.practice else None,
        ),
    )  # fmt: skip
    monitored, rev = await cur.fetchone()
    if not monitored:
        raise NotMonitored(f"{alert.site}/{alert.room}")
    if rev is None:
        return None
    return alert.model_copy(update={"rev": rev})


async def update(
    conn: AsyncConnection, alert: Alert, by: str | None, note: str | None = None
) -> Alert:
    """Store a status change (acknowledge, resolve); returns the alert with its new rev."""
    async with conn.transaction():
        await conn.execute(
            """UPDATE alerts SET status = %s, acknowledged_at = %s, acknowledged_by = %s,
                   resolved_at = %s, resolved_by = %s, outcome = coalesce(%s, outcome),
                   escalation_step = %s, targets = %s, silenced = %s, updated_at = now()
               WHERE id = %s""",
            (
                alert.status.value, alert.acknowledged_at, alert.acknowledged_by,
                alert.resolved_at, alert.resolved_by, alert.outcome, alert.escalation_step,
                alert.targets, alert.silenced, alert.alert_id,
            ),
        )  # fmt: skip
        rev = await _history(conn, alert, by, note or alert.outcome, None)
    return alert.model_copy(update={"rev": rev})


async def notified(
    conn: AsyncConnection, alert: Alert, at: datetime, note: str | None = None
) -> Alert:
    """Record a notification (repeat, escalation, re-sound); escalations enter the history."""
    async with conn.transaction():
        await conn.execute(
            """UPDATE alerts SET escalation_step = %s, targets = %s, last_notified_at = %s,
                   silenced = %s, updated_at = now() WHERE id = %s""",
            (alert.escalation_step, alert.targets, at, alert.silenced, alert.alert_id),
        )
        if note is None:
            return alert
        rev = await _history(conn, alert, None, note, at)
    return alert.model_copy(update={"rev": rev})


async def occurred(conn: AsyncConnection, alert_id: uuid.UUID, at: datetime) -> int:
    """Its cause was seen again while open (de-duplicated): count it."""
    cur = await conn.execute(
        """UPDATE alerts SET occurrences = occurrences + 1, last_seen_at = %s, updated_at = now()
           WHERE id = %s RETURNING occurrences""",
        (at, alert_id),
    )
    row = await cur.fetchone()
    return row[0] if row else 0


async def get(conn: AsyncConnection, alert_id: uuid.UUID) -> Alert | None:
    stored = await get_stored(conn, alert_id)
    return stored.alert if stored else None


async def get_stored(conn: AsyncConnection, alert_id: uuid.UUID) -> Stored | None:
    """An alert with what alerting needs to continue its schedule (episode, last notified)."""
    rows = await _select(conn, "a.id = %s", (alert_id,))
    return _stored(rows[0]) if rows else None


async def practice(conn: AsyncConnection, alert_id: uuid.UUID, site: str) -> bool | None:
    """Whether the alert of this site is a practice one; None if the site has no such alert."""
    cur = await conn.execute(
        "SELECT practice FROM alerts WHERE id = %s AND site = %s", (alert_id, site)
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def open_alerts(conn: AsyncConnection) -> list[Stored]:
    """Every unresolved alert, oldest first (alerting resumes their schedules from these)."""
    rows = await _select(conn, "a.status <> 'resolved' ORDER BY a.started_at")
    return [_stored(r) for r in rows]


async def for_board(conn: AsyncConnection, site: str, resolved_within_s: int = 3600) -> list[Alert]:
    """Open alerts of a site and those resolved lately, newest first (the tablet's list)."""
    rows = await _select(
        conn,
        """a.site = %s AND (a.status <> 'resolved'
                OR a.resolved_at > now() - make_interval(secs => %s))
           ORDER BY a.started_at DESC LIMIT 200""",
        (site, resolved_within_s),
    )
    return [_to_alert(r) for r in rows]


async def changed_since(
    conn: AsyncConnection, site: str, after: int, limit: int = 500
) -> list[Alert]:
    """Alerts of a site changed after history number `after` (what a tablet missed)."""
    rows = await _select(
        conn,
        """a.site = %s AND a.id IN (SELECT h.alert_id FROM alert_history h WHERE h.seq > %s)
           ORDER BY a.started_at LIMIT %s""",
        (site, after, limit),
    )
    return [_to_alert(r) for r in rows]


async def cursor(conn: AsyncConnection) -> int:
    """The newest history number (a snapshot is complete up to it)."""
    cur = await conn.execute("SELECT coalesce(max(seq), 0) FROM alert_history")
    return (await cur.fetchone())[0]


async def known(conn: AsyncConnection, alert_id: uuid.UUID | None) -> uuid.UUID | None:
    """`alert_id` if the centre has that alert, else None."""
    if alert_id is None:
        return None
    cur = await conn.execute("SELECT 1 FROM alerts WHERE id = %s", (alert_id,))
    return alert_id if await cur.fetchone() else None


# -- uploads of a care-home gateway (`gateway_sync.import_sync`) ----------------------------

_RANK = "(CASE {} WHEN 'firing' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END)"


async def merge_uploaded(
    conn: AsyncConnection, sa: SyncAlert, origin: str
) -> tuple[uuid.UUID, bool]:
    """An alert as a gateway had it: inserted once, or merged into the centre's alert of the
    same id or the same source event and kind (the furthest status wins). Returns the
    centre's id and whether it was inserted."""
    a = sa.alert
    cur = await conn.execute(
        """SELECT id FROM alerts WHERE id = %s
           OR (%s::uuid IS NOT NULL AND kind = %s AND source_event = %s)
           ORDER BY (id = %s) DESC LIMIT 1""",
        (a.alert_id, a.source_event, a.kind, a.source_event, a.alert_id),
    )
    row = await cur.fetchone()
    if row is None:
        await conn.execute(
            """INSERT INTO alerts (id, site, room, device, kind, priority, status, title,
                   started_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by,
                   outcome, source_event, practice, resident_id, episode, occurrences,
                   last_seen_at, escalation_step, targets, last_notified_at, silenced,
                   origin)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                       %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                a.alert_id, a.site, a.room, a.device, a.kind, str(a.priority),
                str(a.status), a.title, a.started, a.acknowledged_at,
                a.acknowledged_by, a.resolved_at, a.resolved_by, a.outcome,
                a.source_event, a.practice, sa.resident_id, sa.episode, a.occurrences,
                a.started, a.escalation_step, a.targets, sa.last_notified_at,
                a.silenced, origin,
            ),
        )  # fmt: skip
        return a.alert_id, True
    await conn.execute(
        f"""UPDATE alerts c SET
               status = CASE WHEN {_RANK.format("%s::text")} > {_RANK.format("c.status")}
                             THEN %s ELSE c.status END,
               acknowledged_by = CASE WHEN c.acknowledged_at IS NULL THEN %s
                                      ELSE c.acknowledged_by END,
               acknowledged_at = coalesce(c.acknowledged_at, %s),
               resolved_by = CASE WHEN c.resolved_at IS NULL THEN %s
                                  ELSE c.resolved_by END,
               resolved_at = coalesce(c.resolved_at, %s),
               outcome = coalesce(c.outcome, %s),
               occurrences = greatest(c.occurrences, %s),
               escalation_step = greatest(c.escalation_step, %s),
               targets = ARRAY(SELECT DISTINCT unnest(c.targets || %s::text[])),
               last_notified_at = greatest(c.last_notified_at, %s),
               silenced = c.silenced OR %s,
               origin = %s, updated_at = now()
           WHERE c.id = %s""",
        (
            str(a.status), str(a.status), a.acknowledged_by, a.acknowledged_at,
            a.resolved_by, a.resolved_at, a.outcome, a.occurrences,
            a.escalation_step, a.targets, sa.last_notified_at, a.silenced, origin,
            row[0],
        ),
    )  # fmt: skip
    return row[0], False


async def merge_uploaded_history(
    conn: AsyncConnection, alert_id: uuid.UUID, h: SyncHistory, origin: str
) -> int:
    """A gateway's history row of the centre's alert `alert_id`, once (1 if stored now)."""
    cur = await conn.execute(
        """INSERT INTO alert_history (alert_id, ts, status, by_user, note, origin, origin_seq)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (origin, origin_seq) WHERE origin IS NOT NULL DO NOTHING""",
        (alert_id, h.ts, h.status, h.by_user, h.note, origin, h.seq),
    )
    return cur.rowcount
