"""Digital rounds and visits in the database: gather the sensor data, decide (pure
`rounds.decide`), store, and tell live clients (NOTIFY `nattillsyn_live`).

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

from . import presets
from .care import zone
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


def _json(row: dict) -> dict:
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


async def notify_live(conn: AsyncConnection, schema: str, site: str, kind: str, row: dict) -> None:
    payload = json.dumps({"schema": schema, "site": site, "type": kind, kind: _json(row)})
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
