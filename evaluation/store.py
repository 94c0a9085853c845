"""Database side of evaluation: refresh the summaries, read period totals, store the baseline.

Report queries read the summary tables (`source="summary"`) or compute the same rows from the
raw tables on the fly (`source="raw"`: the benchmark's reference and the equality tests). Both
go through the same three grouped queries, so the two paths differ only in where rows come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from .baseline import BaselineRow
from .totals import AlertStats, BaselineTotals, NightTotals, ResidentTotals

Source = Literal["summary", "raw"]

_NIGHTS = {
    "summary": "SELECT * FROM eval_resident_nights "
    "WHERE site = ANY (%(sites)s) AND night BETWEEN %(start)s AND %(end)s",
    "raw": "SELECT * FROM eval_compute_resident_nights(%(sites)s, %(start)s, %(end)s, true)",
}
_CHECKS = {
    "summary": "SELECT * FROM eval_checks "
    "WHERE site = ANY (%(sites)s) AND night BETWEEN %(start)s AND %(end)s",
    "raw": "SELECT * FROM eval_compute_checks(%(sites)s, %(start)s, %(end)s)",
}
_ALERTS = {
    "summary": "SELECT * FROM eval_alert_facts "
    "WHERE site = ANY (%(sites)s) AND night BETWEEN %(start)s AND %(end)s",
    "raw": "SELECT * FROM eval_compute_alert_facts(%(sites)s, %(start)s, %(end)s)",
}

# Per resident and per night in one pass (grouping sets).
Q_NIGHTS = """
WITH n AS MATERIALIZED ({src})
SELECT site, resident_id::text, night, GROUPING(resident_id, night) AS g,
       count(*), sum(rounds), sum(rounds_digital), sum(digital_ok), sum(physical_needed),
       sum(visits), sum(visits_round), sum(visits_alert), sum(visits_planned),
       sum(visits_unplanned), sum(visits_timed), sum(visit_minutes), sum(alerts),
       sum(scheduled_s), sum(paused_s), sum(covered_s), count(*) FILTER (WHERE paused_s > 0)
FROM n
GROUP BY GROUPING SETS ((site, resident_id), (site, night))
"""

Q_CHECKS = """
WITH c AS MATERIALIZED ({src})
SELECT site, resident_id::text,
       count(*) FILTER (WHERE kind = 'physical' AND at_rest),
       count(*) FILTER (WHERE kind = 'physical' AND at_rest AND activity_after_s <= %(window_s)s),
       count(*) FILTER (WHERE kind = 'digital' AND at_rest),
       count(*) FILTER (WHERE kind = 'digital' AND at_rest AND activity_after_s <= %(window_s)s)
FROM c GROUP BY site, resident_id
"""

Q_ALERTS = """
WITH a AS MATERIALIZED ({src})
SELECT site, kind, priority, resident_id::text, GROUPING(kind, priority, resident_id) AS g,
       count(*), count(DISTINCT resident_id), count(outcome),
       count(*) FILTER (WHERE outcome = 'false_alarm'),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ack_s),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY ack_s),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY response_s),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY response_s),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY resolve_s),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY resolve_s)
FROM a
GROUP BY GROUPING SETS ((site), (site, kind, priority), (site, resident_id))
"""


@dataclass
class Totals:
    """Everything a report needs over a period, for a set of units."""

    residents: dict[str, list[ResidentTotals]] = field(default_factory=dict)
    nights: dict[str, list[NightTotals]] = field(default_factory=dict)
    alert_units: dict[str, AlertStats] = field(default_factory=dict)
    alert_cells: dict[str, list[AlertStats]] = field(default_factory=dict)
    # Residents whose newest consent covers pseudonymised evaluation (administration's
    # `consents`): only they appear in per-resident tables; everyone counts in aggregates.
    consented: set[str] = field(default_factory=set)


async def refresh(
    conn: AsyncConnection, lookback_h: float = 48.0, min_interval_s: float = 300.0
) -> int:
    """Bring the summary tables up to date; returns resident-nights recomputed.

    Changed alerts, rounds, visits and pauses are always caught up; the telemetry lookback
    window at most every `min_interval_s` (0: now).
    """
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT eval_refresh(make_interval(secs => %s), make_interval(secs => %s))",
            (lookback_h * 3600.0, min_interval_s),
        )
        return (await cur.fetchone())[0]


async def materialise_telemetry(
    conn: AsyncConnection, start: datetime | None = None, end: datetime | None = None
) -> bool:
    """TimescaleDB: materialise the heartbeat buckets of a backfill (older than the policy's
    window); a no-op on plain PostgreSQL. Needs an autocommit connection."""
    cur = await conn.execute(
        """SELECT to_regclass('eval_heartbeat_5m') IS NOT NULL
                  AND EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"""
    )
    if not (await cur.fetchone())[0]:
        return False
    await conn.execute(
        "CALL public.refresh_continuous_aggregate('eval_heartbeat_5m', %s, %s)", (start, end)
    )
    return True


async def refresh_all(conn: AsyncConnection) -> int:
    """Recompute every night of every unit (after a schedule change or very late data).

    Only while the raw telemetry of those nights is kept: nights whose heartbeats retention
    already removed would lose their coverage.
    """
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO eval_dirty (site, night)
               SELECT site, night FROM eval_resident_nights
               UNION SELECT x.site, eval_night(x.ts, coalesce(s.timezone, 'Europe/Stockholm'))
               FROM (SELECT site, started_at AS ts FROM alerts
                     UNION SELECT site, scheduled_at FROM rounds
                     UNION SELECT site, started_at FROM visits) x
               LEFT JOIN sites s ON s.id = x.site
               ON CONFLICT DO NOTHING"""
        )
        cur = await conn.execute("SELECT eval_refresh(interval '0', interval '0')")
        return (await cur.fetchone())[0]


async def fetch(
    conn: AsyncConnection,
    sites: Sequence[str],
    start: date,
    end: date,
    *,
    awakening_window_min: float,
    source: Source = "summary",
) -> Totals:
    params = {
        "sites": list(sites),
        "start": start,
        "end": end,
        "window_s": awakening_window_min * 60.0,
    }
    out = Totals({s: [] for s in sites}, {s: [] for s in sites}, {}, {s: [] for s in sites})
    by_resident: dict[tuple[str, str], ResidentTotals] = {}

    cur = await conn.execute(sql.SQL(Q_NIGHTS.format(src=_NIGHTS[source])), params)
    for row in await cur.fetchall():
        site, rid, night, g, n, *sums, paused = row
        if g == 1:  # per resident (night rolled up)
            t = ResidentTotals(site, rid, n, *(_num(v) for v in sums), paused_nights=paused)
            by_resident[(site, rid)] = t
            out.residents[site].append(t)
        else:
            (
                rounds, _rd, digital_ok, _pn, visits, *_r, _vt, _vm, alerts, sched, pau, cov,
            ) = (_num(v) for v in sums)  # fmt: skip
            out.nights[site].append(
                NightTotals(site, night, n, rounds, digital_ok, visits, alerts, sched, pau, cov,
                            paused)
            )  # fmt: skip

    cur = await conn.execute(sql.SQL(Q_CHECKS.format(src=_CHECKS[source])), params)
    for site, rid, cp, wp, cd, wd in await cur.fetchall():
        t = by_resident.get((site, rid))
        if t is not None:  # checks outside any counted night cannot happen; be safe
            t.checks_physical, t.woken_physical, t.checks_digital, t.woken_digital = cp, wp, cd, wd

    cur = await conn.execute(sql.SQL(Q_ALERTS.format(src=_ALERTS[source])), params)
    for site, kind, prio, rid, g, n, nres, with_out, false, *pct in await cur.fetchall():
        stats = AlertStats(site, kind, prio, n, nres, with_out, false, *pct)
        if g == 0b111:
            out.alert_units[site] = stats
        elif g == 0b001:
            out.alert_cells[site].append(stats)
        elif rid is not None and (t := by_resident.get((site, rid))) is not None:
            t.alerts_with_outcome, t.false_alarms = with_out, false
    cur = await conn.execute(
        """SELECT id FROM (
               SELECT DISTINCT ON (c.resident_id) c.resident_id::text AS id,
                      c.withdrawn_at IS NULL AND c.scope ? 'evaluation_pseudonymised' AS ok
               FROM consents c JOIN residents r ON r.id = c.resident_id
               WHERE r.site_id = ANY (%(sites)s)
               ORDER BY c.resident_id, c.given_at DESC) newest
           WHERE ok""",
        params,
    )
    out.consented = {r[0] for r in await cur.fetchall()}
    # A stable order: bootstrap resamples are drawn by position.
    for rows in out.residents.values():
        rows.sort(key=lambda t: t.resident_id)
    for nights in out.nights.values():
        nights.sort(key=lambda t: t.night)
    for cells in out.alert_cells.values():
        cells.sort(key=lambda c: (c.kind or "", c.priority or ""))
    return out


async def resident_nights(
    conn: AsyncConnection, site: str, start: date, end: date, source: Source = "summary"
) -> list[dict]:
    """One unit's resident-night rows (for pseudonymised microdata exports)."""
    params = {"sites": [site], "start": start, "end": end}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL(f"SELECT * FROM ({_NIGHTS[source]}) n ORDER BY resident_id, night"),
            params,
        )
        rows = await cur.fetchall()
    for r in rows:
        r["resident_id"] = str(r["resident_id"])
    return rows


def _num(v: object) -> float:
    if v is None:
        return 0
    f = float(v)  # type: ignore[arg-type]
    return int(f) if f.is_integer() else f


async def unit_names(conn: AsyncConnection, sites: Sequence[str] | None = None) -> dict[str, str]:
    cur = await conn.execute(
        "SELECT id, name FROM sites WHERE %(s)s::text[] IS NULL OR id = ANY (%(s)s) ORDER BY id",
        {"s": list(sites) if sites is not None else None},
    )
    return dict(await cur.fetchall())


async def baseline_totals(
    conn: AsyncConnection, site: str, start: date | None = None, end: date | None = None
) -> tuple[list[BaselineTotals], date | None, date | None]:
    cur = await conn.execute(
        """SELECT resident_ref, count(*), sum(planned_visits + unplanned_visits),
                  coalesce(sum(minutes), 0),
                  coalesce(sum(planned_visits + unplanned_visits) FILTER (WHERE minutes IS NULL), 0),
                  min(night), max(night)
           FROM baseline_nights
           WHERE site = %(site)s AND (%(start)s::date IS NULL OR night >= %(start)s)
             AND (%(end)s::date IS NULL OR night <= %(end)s)
           GROUP BY resident_ref""",
        {"site": site, "start": start, "end": end},
    )
    rows = await cur.fetchall()
    totals = [BaselineTotals(site, r[0], r[1], int(r[2]), float(r[3]), int(r[4])) for r in rows]
    first = min((r[5] for r in rows), default=None)
    last = max((r[6] for r in rows), default=None)
    return totals, first, last


async def save_baseline(
    conn: AsyncConnection,
    site: str,
    rows: Sequence[BaselineRow],
    *,
    by: str,
    source: str | None = None,
) -> str:
    """Store validated rows as one import; a row for the same resident and night is replaced."""
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO baseline_imports (site, imported_by, source, rows)
               VALUES (%s, %s, %s, %s) RETURNING id""",
            (site, by, source, len(rows)),
        )
        import_id = (await cur.fetchone())[0]
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS baseline_stage (LIKE baseline_nights) ON COMMIT DELETE ROWS"
        )
        async with (
            conn.cursor() as c,
            c.copy(
                "COPY baseline_stage (site, resident_ref, night, planned_visits, unplanned_visits, "
                "minutes, import_id) FROM STDIN"
            ) as cp,
        ):
            for r in rows:
                await cp.write_row(
                    (r.unit, r.resident, r.night, r.planned_visits, r.unplanned_visits,
                     r.minutes, import_id)
                )  # fmt: skip
        await conn.execute(
            """INSERT INTO baseline_nights SELECT * FROM baseline_stage
               ON CONFLICT (site, resident_ref, night) DO UPDATE SET
                   planned_visits = EXCLUDED.planned_visits,
                   unplanned_visits = EXCLUDED.unplanned_visits,
                   minutes = EXCLUDED.minutes, import_id = EXCLUDED.import_id"""
        )
    return str(import_id)
