"""Write synthetic data into the database with COPY (demo, tests, benchmark)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from . import store
from .synthetic import UnitData

COLUMNS = {
    "rounds": "id, site, room, resident_id, scheduled_at, mode, produced_at, observed_state, "
    "summary, decision, reason, confirmed_by, confirmed_at, practice",
    "alerts": "id, site, room, device, kind, priority, status, title, started_at, acknowledged_at, "
    "acknowledged_by, resolved_at, resolved_by, outcome, resident_id, practice",
    "alert_history": "alert_id, ts, status, by_user, note",
    "visits": "id, site, room, resident_id, started_at, ended_at, by_user, reason, round_id, "
    "alert_id, practice",
    "room_states": "ts, id, site, room, device, session, seq, state, since, confidence, payload",
    "monitoring_pauses": "id, resident_id, starts_at, ends_at, reason, created_by",
}
_HB_PAYLOAD = {
    True: '{"monitoring": true, "synthetic": true}',
    False: '{"monitoring": false, "synthetic": true}',
}


@dataclass
class Loaded:
    units: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, n: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + n


async def _copy(conn: AsyncConnection, table: str, rows: list[tuple]) -> int:
    if not rows:
        return 0
    async with conn.cursor() as cur, cur.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as cp:
        for row in rows:
            await cp.write_row(row)
    return len(rows)


async def _structure(conn: AsyncConnection, data: UnitData) -> None:
    u = data.unit
    await conn.execute(
        "INSERT INTO sites (id, name, timezone) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (u.site, u.name, u.tz),
    )
    for r in u.residents:
        await conn.execute(
            "INSERT INTO rooms (site_id, id, name) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (u.site, r.room, "Rum " + r.room.removeprefix("rum-")),
        )
        await conn.execute(
            """INSERT INTO residents (id, site_id, room_id, display_name, monitoring_active,
                                      monitor_from, monitor_to)
               VALUES (%s, %s, %s, %s, true, %s, %s) ON CONFLICT DO NOTHING""",
            (r.id, u.site, r.room, r.name, r.monitor_from, r.monitor_to),
        )
        scope = ["alerts_to_staff", "digital_rounds", "motion_analysis"]
        if r.evaluation_consent:
            scope.append("evaluation_pseudonymised")
        await conn.execute(
            """INSERT INTO consents (resident_id, given_by, relation, given_at, scope, recorded_by)
               SELECT %s, 'Den boende själv (syntetisk)', 'resident', now() - interval '2 years',
                      %s, 'synthetic'
               WHERE NOT EXISTS (SELECT 1 FROM consents WHERE resident_id = %s)""",
            (r.id, Jsonb(scope), r.id),
        )
        for at, mode in r.times:
            await conn.execute(
                """INSERT INTO tillsyn_times (resident_id, at_time, mode) VALUES (%s, %s, %s)
                   ON CONFLICT DO NOTHING""",
                (r.id, at, mode),
            )
        await conn.execute(
            """INSERT INTO devices (site_id, id, room_id, availability)
               VALUES (%s, %s, %s, 'online') ON CONFLICT DO NOTHING""",
            (u.site, f"dev-{r.room}", r.room),
        )


async def load(
    conn: AsyncConnection,
    units: Iterable[UnitData],
    *,
    heartbeat_s: int = 300,
    baseline: bool = True,
) -> Loaded:
    """Store each unit's rows in one transaction; the baseline as an import by 'synthetic'."""
    out = Loaded()
    spans: list[tuple] = []
    for data in units:
        async with conn.transaction():
            if data.unit.create:
                await _structure(conn, data)
            for table, rows in (
                ("rounds", data.rounds),
                ("alerts", data.alerts),
                ("alert_history", data.alert_history),
                ("visits", data.visits),
                ("room_states", data.states),
                ("monitoring_pauses", data.pauses),
            ):
                out.add(table, await _copy(conn, table, rows))
            out.add("heartbeats", await _heartbeats(conn, data.heartbeats, heartbeat_s))
            if baseline and data.baseline:
                await store.save_baseline(
                    conn, data.unit.site, data.baseline, by="synthetic", source="synthetic"
                )
                out.add("baseline_nights", len(data.baseline))
        out.units.append(data.unit.site)
        spans += [(h[4], h[5]) for h in data.heartbeats]
    if spans:  # a backfill: materialise it now rather than read raw through the aggregate
        await store.materialise_telemetry(
            conn, min(s for s, _ in spans), max(e for _, e in spans) + timedelta(minutes=5)
        )
    return out


async def _heartbeats(conn: AsyncConnection, intervals: list[tuple], every_s: int) -> int:
    """Device-up intervals → one heartbeat every `every_s` seconds, expanded by the server."""
    if not intervals:
        return 0
    await conn.execute(
        """CREATE TEMP TABLE IF NOT EXISTS synth_hb (site text, room text, device text,
               session bigint, starts timestamptz, ends timestamptz, monitoring boolean)"""
    )
    await conn.execute("TRUNCATE synth_hb")
    async with (
        conn.cursor() as cur,
        cur.copy(
            "COPY synth_hb (site, room, device, session, starts, ends, monitoring) FROM STDIN"
        ) as cp,
    ):
        for row in intervals:
            await cp.write_row(row)
    cur = await conn.execute(
        """INSERT INTO heartbeats (ts, id, site, room, device, session, seq, payload)
           SELECT g, gen_random_uuid(), h.site, h.room, h.device, h.session,
                  extract(epoch FROM g)::bigint,
                  CASE WHEN h.monitoring THEN %s::jsonb ELSE %s::jsonb END
           FROM synth_hb h,
                generate_series(h.starts, h.ends - interval '1 microsecond',
                                make_interval(secs => %s)) g""",
        (_HB_PAYLOAD[True], _HB_PAYLOAD[False], every_s),
    )
    return cur.rowcount
