"""Digital rounds and visits in the database, the only writer of tables `rounds` and `visits`:
gather the sensor data, decide (pure `rounds.decide`), store, and tell live clients (NOTIFY
`nattillsyn_live`). The api confirms rounds and registers visits through these functions.

The evaluation reads `rounds` and `visits`: one `rounds` row per resident and agreed time
(`decision` digital_ok = a visit avoided, physical_needed = a visit due), one `visits` row
per physical visit made (start/end, why). Practice rows are marked and never counted.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from nattillsyn.ids import new_id
from nattillsyn.protocol import RoomStateName
from nattillsyn.protocol.gateway import SyncRound, SyncVisit

from . import alerts_db, presets
from .care import CARE_CHANNEL, zone
from .rounds import RoundInput, StateSample, decide, occurrence

LIVE_CHANNEL = "nattillsyn_live"
ROUND_COLUMNS = (
    "id, site, room, resident_id, scheduled_at, mode, produced_at, observed_state, "
    "observed_since, confidence, summary, decision, reason, confirmed_by, confirmed_at, "
    "practice, late"
)
VISIT_COLUMNS = (
    "id, site, room, resident_id, started_at, ended_at, by_user, reason, round_id, alert_id, "
    "practice"
)


class UnknownReference(ValueError):
    """A visit names a round entry, alert or room the unit does not have."""


def as_json(row: dict) -> dict:
    """A round or visit row with its times and ids as JSON strings (live messages, snapshots)."""
    return {
        k: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v)
        for k, v in row.items()
    }


async def visits_since(conn: AsyncConnection, site: str, since: datetime, limit: int) -> list[dict]:
    """A unit's visits started after `since`, open or not, newest first (the tablet's
    "tonight"); an open one of an earlier night is not shown as ongoing."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {VISIT_COLUMNS} FROM visits WHERE site = %s AND started_at > %s
                ORDER BY started_at DESC LIMIT %s""",
            (site, since, limit),
        )
        return await cur.fetchall()


async def rounds_since(conn: AsyncConnection, site: str, since: datetime) -> list[dict]:
    """A unit's round entries scheduled after `since`, with the resident's name, in order."""
    cols = ", ".join(f"ro.{c.strip()}" for c in ROUND_COLUMNS.split(","))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {cols}, res.display_name AS resident FROM rounds ro
                LEFT JOIN residents res ON res.id = ro.resident_id
                WHERE ro.site = %s AND ro.scheduled_at > %s
                ORDER BY ro.scheduled_at, ro.room""",
            (site, since),
        )
        return await cur.fetchall()


async def confirm(
    conn: AsyncConnection, schema: str, ids: list[uuid.UUID], by: str, sites: list[str] | None
) -> list[dict]:
    """Staff have seen these round entries (of `sites`; None: any); the ones newly confirmed."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""UPDATE rounds SET confirmed_by = %s, confirmed_at = now()
                WHERE id = ANY(%s) AND confirmed_at IS NULL
                  AND (%s OR site = ANY(%s)) RETURNING {ROUND_COLUMNS}""",
            (by, ids, sites is None, sites or []),
        )
        rows = await cur.fetchall()
        for row in rows:
            await notify_live(conn, schema, row["site"], "round", row)
    return rows


async def _practice_of(conn: AsyncConnection, site: str, round_id, alert_id) -> bool:
    """Whether the round entry or alert a visit is for is a practice one (both must exist)."""
    practice = False
    if round_id is not None:
        cur = await conn.execute(
            "SELECT practice FROM rounds WHERE id = %s AND site = %s", (round_id, site)
        )
        row = await cur.fetchone()
        if row is None:
            raise UnknownReference("round_id: no such round entry")
        practice = row[0]
    if alert_id is not None:
        alert_practice = await alerts_db.practice(conn, alert_id, site)
        if alert_practice is None:
            raise UnknownReference("alert_id: no such alert")
        practice = practice or alert_practice
    return practice


async def _visit_changed(conn: AsyncConnection, schema: str, row: dict) -> None:
    await notify_live(conn, schema, row["site"], "visit", row)
    # Alerting pauses re-sounding while staff are in the room.
    await conn.execute("SELECT pg_notify(%s, %s)", (CARE_CHANNEL, f"{schema}.visits"))


async def start_visit(
    conn: AsyncConnection,
    schema: str,
    *,
    site: str,
    room: str,
    by: str,
    reason: str,
    round_id: uuid.UUID | None,
    alert_id: uuid.UUID | None,
) -> dict:
    """Staff enter a room: store the visit (practice if what it is for is) and announce it.
    UnknownReference if the round entry, alert or room is not the unit's."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        practice = await _practice_of(conn, site, round_id, alert_id)
        await cur.execute("SELECT 1 FROM rooms WHERE site_id = %s AND id = %s", (site, room))
        if await cur.fetchone() is None:
            raise UnknownReference("room: no such room in this unit")
        await cur.execute(
            f"""INSERT INTO visits (id, site, room, resident_id, started_at, by_user, reason,
                                    round_id, alert_id, practice)
                SELECT %s, %s, %s, (SELECT id FROM residents WHERE site_id = %s AND room_id = %s
                                    AND active LIMIT 1), now(), %s, %s, %s, %s, %s
                RETURNING {VISIT_COLUMNS}""",
            (new_id(), site, room, site, room, by, reason, round_id, alert_id, practice),
        )
        row = await cur.fetchone()
        await _visit_changed(conn, schema, row)
    return row


async def end_visit(
    conn: AsyncConnection, schema: str, visit_id: str, sites: list[str] | None
) -> dict | None:
    """Staff leave the room: end the open visit (of `sites`; None: any); None if none is open."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""UPDATE visits SET ended_at = greatest(now(), started_at)
                WHERE id::text = %s AND ended_at IS NULL AND (%s OR site = ANY(%s))
                RETURNING {VISIT_COLUMNS}""",
            (visit_id, sites is None, sites or []),
        )
        row = await cur.fetchone()
        if row is not None:
            await _visit_changed(conn, schema, row)
    return row


async def notify_live(conn: AsyncConnection, schema: str, site: str, kind: str, row: dict) -> None:
    payload = json.dumps({"schema": schema, "site": site, "type": kind, kind: as_json(row)})
    await conn.execute("SELECT pg_notify(%s, %s)", (LIVE_CHANNEL, payload))


async def due_slots(
    conn: AsyncConnection, now: datetime, grace_s: float
) -> list[tuple[dict, datetime]]:
    """(resident, slot) pairs whose agreed time has come within the grace and have no round."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT r.id AS resident_id, r.site_id AS site, r.room_id AS room, t.at_time,
                      t.mode, s.timezone, r.risk_preset, r.rule_overrides
               FROM tillsyn_times t JOIN residents r ON r.id = t.resident_id
               JOIN sites s ON s.id = r.site_id
               WHERE r.active AND r.room_id IS NOT NULL"""
        )
        rows = await cur.fetchall()
        await cur.execute(
            """SELECT resident_id, scheduled_at FROM rounds
               WHERE NOT practice AND scheduled_at > %s""",
            (now - timedelta(seconds=grace_s + 86400),),
        )
        done = {(r["resident_id"], r["scheduled_at"]) for r in await cur.fetchall()}
    out = []
    for row in rows:
        slot = occurrence(row["at_time"], now, zone(row["timezone"]))
        if (now - slot).total_seconds() > grace_s:
            continue
        if (row["resident_id"], slot) in done:
            continue
        out.append((row, slot))
    return out


async def produce(
    conn: AsyncConnection,
    schema: str,
    *,
    resident_id: uuid.UUID,
    site: str,
    room: str,
    scheduled_at: datetime,
    mode: str,
    preset: str,
    overrides: dict | None,
    tz: ZoneInfo,
    now: datetime,
    window_s: float,
    practice: bool = False,
    late: bool = False,
) -> dict | None:
    """Make, store and announce one round entry; None if it already exists."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT monitoring_active(%s, %s, %s) AS m", (site, room, now))
        monitored = (await cur.fetchone())["m"]
        await cur.execute(
            """(SELECT ts, state, since, confidence FROM room_states
                WHERE site = %s AND room = %s AND ts <= %s AND ts > %s)
               UNION ALL
               (SELECT ts, state, since, confidence FROM room_states
                WHERE site = %s AND room = %s AND ts <= %s ORDER BY ts DESC LIMIT 1)""",
            (site, room, now, now - timedelta(seconds=window_s), site, room, now),
        )
        samples = sorted(
            {(r["ts"], r["state"], r["since"], r["confidence"]) for r in await cur.fetchall()},
            key=lambda s: s[0],
        )
        await cur.execute(
            """SELECT max(last_heartbeat) AS hb,
                      bool_or(availability = 'online') AS online,
                      bool_and(availability = 'offline') AS offline
               FROM devices WHERE site_id = %s AND room_id = %s""",
            (site, room),
        )
        dev = await cur.fetchone()
        await cur.execute(
            """SELECT kind FROM alerts WHERE site = %s AND room = %s AND status <> 'resolved'
               AND practice = %s""",
            (site, room, practice),
        )
        open_kinds = [r["kind"] for r in await cur.fetchall()]
    try:
        rules = presets.effective_rules(preset, overrides or {})
    except ValueError:
        rules = presets.effective_rules(preset)
    online = (
        None
        if dev is None or dev["online"] is None
        else (True if dev["online"] else (False if dev["offline"] else None))
    )
    result = decide(
        RoundInput(
            scheduled_at=now,
            mode=mode,  # type: ignore[arg-type]
            monitored=bool(monitored),
            samples=[
                StateSample(ts, RoomStateName(st), since, conf) for ts, st, since, conf in samples
            ],
            last_heartbeat=dev["hb"] if dev else None,
            device_online=online,
            open_alerts=open_kinds,
            rules=rules,
            window_s=window_s,
            tz=tz,
        )
    )
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""INSERT INTO rounds (id, site, room, resident_id, scheduled_at, mode, produced_at,
                    observed_state, observed_since, confidence, summary, decision, reason,
                    practice, late)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT DO NOTHING RETURNING {ROUND_COLUMNS}""",
            (
                new_id(), site, room, resident_id, scheduled_at, mode, now,
                result.observed_state, result.observed_since, result.confidence, result.summary,
                result.decision, result.reason, practice, late,
            ),
        )  # fmt: skip
        row = await cur.fetchone()
        if row is not None:
            await notify_live(conn, schema, site, "round", row)
    return row


async def produce_due(
    conn: AsyncConnection, schema: str, now: datetime, window_s: float, grace_s: float
) -> list[dict]:
    """Every round entry whose time has come (idempotent: the unique key stops doubles)."""
    made = []
    for row, slot in await due_slots(conn, now, grace_s):
        entry = await produce(
            conn,
            schema,
            resident_id=row["resident_id"],
            site=row["site"],
            room=row["room"],
            scheduled_at=slot,
            mode=row["mode"],
            preset=row["risk_preset"],
            overrides=row["rule_overrides"],
            tz=zone(row["timezone"]),
            now=now,
            window_s=window_s,
            late=(now - slot).total_seconds() > 120,
        )
        if entry is not None:
            made.append(entry)
    return made


async def practice_round(
    conn: AsyncConnection, schema: str, site: str, now: datetime, window_s: float
) -> list[dict]:
    """A practice round for every included resident of a unit, now (staff training)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT r.id, r.room_id, r.risk_preset, r.rule_overrides, s.timezone
               FROM residents r JOIN sites s ON s.id = r.site_id
               WHERE r.site_id = %s AND r.active AND r.room_id IS NOT NULL ORDER BY r.room_id""",
            (site,),
        )
        residents = await cur.fetchall()
    made = []
    slot = now.replace(microsecond=0)
    for r in residents:
        entry = await produce(
            conn,
            schema,
            resident_id=r["id"],
            site=site,
            room=r["room_id"],
            scheduled_at=slot,
            mode="digital",
            preset=r["risk_preset"],
            overrides=r["rule_overrides"],
            tz=zone(r["timezone"]),
            now=now,
            window_s=window_s,
            practice=True,
        )
        if entry is not None:
            made.append(entry)
    return made


# -- uploads of a care-home gateway (`gateway_sync.import_sync`) ----------------------------


async def known_round(conn: AsyncConnection, round_id: uuid.UUID | None) -> uuid.UUID | None:
    """`round_id` if the centre has that round entry, else None."""
    if round_id is None:
        return None
    cur = await conn.execute("SELECT 1 FROM rounds WHERE id = %s", (round_id,))
    return round_id if await cur.fetchone() else None


async def merge_uploaded_round(
    conn: AsyncConnection, site: str, r: SyncRound
) -> tuple[uuid.UUID | None, bool]:
    """A gateway's round entry: inserted once, or merged into the centre's entry of the slot.
    Returns the centre's id of it (None if none) and whether it was inserted."""
    cur = await conn.execute(
        """INSERT INTO rounds (id, site, room, resident_id, scheduled_at, mode,
               produced_at, observed_state, observed_since, confidence, summary,
               decision, reason, confirmed_by, confirmed_at, late, practice)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT DO NOTHING RETURNING id""",
        (
            r.id, site, r.room, r.resident_id, r.scheduled_at, r.mode, r.produced_at,
            r.observed_state, r.observed_since, r.confidence, r.summary, r.decision,
            r.reason, r.confirmed_by, r.confirmed_at, r.late, r.practice,
        ),
    )  # fmt: skip
    if await cur.fetchone() is not None:
        return r.id, True
    # The slot exists: the gateway saw the room while the centre (cut off) did not,
    # so its entry wins unless staff already confirmed the central one.
    cur = await conn.execute(
        """UPDATE rounds SET observed_state = %s, observed_since = %s, confidence = %s,
               summary = %s, decision = %s, reason = %s,
               confirmed_by = coalesce(confirmed_by, %s),
               confirmed_at = coalesce(confirmed_at, %s)
           WHERE (id = %s OR (resident_id = %s AND scheduled_at = %s AND practice = %s))
             AND (confirmed_at IS NULL OR id = %s)
           RETURNING id""",
        (
            r.observed_state, r.observed_since, r.confidence, r.summary, r.decision,
            r.reason, r.confirmed_by, r.confirmed_at, r.id, r.resident_id,
            r.scheduled_at, r.practice, r.id,
        ),
    )  # fmt: skip
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            """SELECT id FROM rounds WHERE resident_id = %s AND scheduled_at = %s
               AND practice = %s""",
            (r.resident_id, r.scheduled_at, r.practice),
        )
        row = await cur.fetchone()
    return (row[0] if row else None), False


async def merge_uploaded_visit(
    conn: AsyncConnection, site: str, v: SyncVisit, central: dict
) -> bool:
    """A gateway's visit: inserted once, or its end added; True if it was inserted. Its round
    entry and alert are ours (`central`: the gateway's ids → ours) if we have them."""
    round_id = await known_round(conn, central.get(v.round_id, v.round_id))
    alert_id = await alerts_db.known(conn, central.get(v.alert_id, v.alert_id))
    cur = await conn.execute(
        """INSERT INTO visits (id, site, room, resident_id, started_at, ended_at, by_user,
               reason, round_id, alert_id, practice)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (id) DO UPDATE SET
               ended_at = coalesce(visits.ended_at, EXCLUDED.ended_at)
           RETURNING (xmax = 0)""",
        (
            v.id, site, v.room, v.resident_id, v.started_at, v.ended_at, v.by_user,
            v.reason, round_id, alert_id, v.practice,
        ),
    )  # fmt: skip
    row = await cur.fetchone()
    return bool(row and row[0])
