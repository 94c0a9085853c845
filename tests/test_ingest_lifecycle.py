"""Storage lifecycle: summaries, retention and compression, and the same query results on
plain PostgreSQL and TimescaleDB."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from nattillsyn.clock import ManualClock
from nattillsyn.db.migrate import migrate
from nattillsyn.ingest.service import IngestService
from nattillsyn.ingest.storage import Maintainer, maintain, refresh_summary, set_policy

# Storage-related: every database test runs on plain PostgreSQL and on TimescaleDB.
pytestmark = pytest.mark.both_backends

# -- test data, generated the same way in every database ------------------------------------

SEED_SQL = """
INSERT INTO sites (id, name, timezone) VALUES ('site-1', 'Solgården', 'Europe/Stockholm'),
                                              ('site-2', 'Havsblick', 'UTC');
INSERT INTO rooms (site_id, id, name) VALUES ('site-1', 'r1', 'r1'), ('site-1', 'r2', 'r2'),
                                             ('site-2', 'r1', 'r1');
INSERT INTO residents (site_id, room_id, display_name, monitoring_active)
VALUES ('site-1', 'r1', 'A', true), ('site-2', 'r1', 'B', true);
"""

# %(t0)s: an hour boundary; every n-th minute over `days`, three rooms, deterministic values.
DATA_SQL = """
INSERT INTO events (ts, id, site, room, device, session, seq, event_id, type, phase, score, zone,
                    payload)
SELECT %(t0)s - g * interval '7 minutes',
       md5('e' || g || s.site || s.room || %(tag)s)::uuid, s.site, s.room, 'd-' || s.room, 1, g,
       md5('ev' || (g / 3) || s.room)::uuid,
       (ARRAY['motion', 'motion', 'possible_fall', 'too_dark'])[1 + g %% 4],
       (ARRAY['new', 'update', 'end'])[1 + g %% 3],
       ((g * 37) %% 100) / 100.0, 'bed', '{}'
FROM generate_series(0, %(n)s) g,
     (VALUES ('site-1', 'r1'), ('site-1', 'r2'), ('site-2', 'r1')) AS s(site, room);
INSERT INTO room_states (ts, id, site, room, device, session, seq, state, since, confidence, payload)
SELECT %(t0)s - g * interval '11 minutes', md5('s' || g || %(tag)s)::uuid, 'site-1', 'r1', 'd-r1',
       1, g, (ARRAY['in_bed', 'out_of_bed', 'in_chair'])[1 + g %% 3],
       %(t0)s - g * interval '11 minutes', ((g * 13) %% 100) / 100.0, '{}'
FROM generate_series(0, %(n)s) g;
INSERT INTO heartbeats (ts, id, site, room, device, session, seq, payload)
SELECT %(t0)s - g * interval '15 minutes', md5('h' || g || %(tag)s)::uuid, 'site-1', 'r2', 'd-r2',
       1, g, CASE WHEN g %% 5 = 0 THEN '{"monitoring": false}' ELSE '{}' END::jsonb
FROM generate_series(0, %(n)s) g;
"""

DATA_STATEMENTS = [q for q in DATA_SQL.split(";") if q.strip()]


async def _insert(conn: psycopg.AsyncConnection, params: dict, only_events: bool = False) -> None:
    for q in DATA_STATEMENTS[:1] if only_events else DATA_STATEMENTS:
        await conn.execute(q + (" ON CONFLICT DO NOTHING" if only_events else ""), params)


QUERIES = [
    "SELECT * FROM events_hourly ORDER BY 1, 2, 3, 4",
    "SELECT * FROM events_nightly ORDER BY 1, 2, 3, 4",
    "SELECT * FROM room_states_hourly ORDER BY 1, 2, 3, 4",
    "SELECT * FROM room_states_nightly ORDER BY 1, 2, 3, 4",
    "SELECT * FROM heartbeats_hourly ORDER BY 1, 2, 3, 4",
    "SELECT * FROM heartbeats_nightly ORDER BY 1, 2, 3, 4",
    "SELECT night, site, room, type, started, messages FROM events_nightly_by_resident "
    "ORDER BY 1, 2, 3, 4",
    # numeric: a float sum depends on the order rows are read in (compressed or not)
    "SELECT date_trunc('day', ts, 'UTC'), count(*), sum(score::numeric) FROM events GROUP BY 1 "
    "ORDER BY 1",
    "SELECT count(*), min(ts), max(ts) FROM room_states",
    "SELECT count(*) FROM heartbeats",
]


def _hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


async def _conn(url: str, schema: str) -> psycopg.AsyncConnection:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
    return conn


async def _results(conn: psycopg.AsyncConnection) -> list[list[tuple]]:
    return [await (await conn.execute(q)).fetchall() for q in QUERIES]


async def _direct(conn: psycopg.AsyncConnection) -> list[tuple]:
    """events_hourly computed straight from the raw rows."""
    cur = await conn.execute(
        """SELECT summary_bucket(interval '1 hour', ts), site, room, type,
                  count(*) FILTER (WHERE phase = 'new'), count(*), max(score), min(ts), max(ts)
           FROM events GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""
    )
    return await cur.fetchall()


# -- each backend ----------------------------------------------------------------------------


async def _materialised(conn: psycopg.AsyncConnection, backend: str, schema: str) -> int:
    """Rows materialised for events_hourly: the refreshed table on plain PostgreSQL, the
    continuous aggregate's materialisation hypertable on TimescaleDB."""
    if backend == "plain":
        query = "SELECT count(*) FROM events_hourly_mat"
    else:
        cur = await conn.execute(
            "SELECT format('%%I.%%I', materialization_hypertable_schema, "
            "materialization_hypertable_name) FROM timescaledb_information.continuous_aggregates "
            "WHERE view_schema = %s AND view_name = 'events_hourly'",
            (schema,),
        )
        query = f"SELECT count(*) FROM {(await cur.fetchone())[0]}"
    return (await (await conn.execute(query)).fetchone())[0]


async def test_summary_is_real_time_and_refresh_follows_invalidations(
    database_url: str, db_schema: str, backend: str
) -> None:
    now = datetime.now(UTC)
    t0 = _hour(now) - timedelta(hours=2)
    async with await _conn(database_url, db_schema) as conn:
        await conn.execute(SEED_SQL)
        await _insert(conn, {"t0": t0, "n": 400, "tag": "a"})
        # Nothing materialised: the view is computed from the source.
        assert (
            await (await conn.execute("SELECT * FROM events_hourly ORDER BY 1, 2, 3, 4")).fetchall()
        ) == await _direct(conn)
        # Materialise all but the last day, then the view mixes table and source.
        await refresh_summary(conn, "events_hourly", None, t0 - timedelta(days=1))
        assert await _materialised(conn, backend, db_schema) > 0
        hourly = "SELECT * FROM events_hourly ORDER BY 1, 2, 3, 4"
        assert await (await conn.execute(hourly)).fetchall() == await _direct(conn)
        # A late row below the watermark: stale until a refresh covers its bucket...
        late = t0 - timedelta(days=1, hours=5, minutes=3)
        await conn.execute(
            "INSERT INTO events (ts, id, site, room, device, session, seq, event_id, type, phase,"
            " score, payload) VALUES (%s, %s, 'site-1', 'r1', 'd-r1', 1, 9999, %s, 'motion', "
            "'new', 1, '{}')",
            (late, uuid.uuid4(), uuid.uuid4()),
        )
        assert await (await conn.execute(hourly)).fetchall() != await _direct(conn)
        if backend == "plain":  # TimescaleDB keeps its own invalidation log
            inv = await (
                await conn.execute(
                    "SELECT lo, hi FROM summary_invalidations WHERE summary = 'events_hourly' "
                    "AND lo > '-infinity' AND hi < 'infinity'"
                )
            ).fetchall()
            bucket = late.replace(minute=0, second=0, microsecond=0)
            assert (bucket, bucket + timedelta(hours=1)) in inv
        # ...a refresh whose window does not reach it leaves it stale; one that does fixes it.
        await refresh_summary(conn, "events_hourly", t0 - timedelta(hours=20), t0)
        assert await (await conn.execute(hourly)).fetchall() != await _direct(conn)
        await refresh_summary(conn, "events_hourly", t0 - timedelta(days=2), t0)
        assert await (await conn.execute(hourly)).fetchall() == await _direct(conn)
        # An UPDATE and a DELETE invalidate as well.
        await conn.execute("UPDATE events SET score = 0.01 WHERE seq = 9999")
        await conn.execute("DELETE FROM events WHERE seq BETWEEN 300 AND 310")
        await refresh_summary(conn, "events_hourly", None, t0)
        assert await (await conn.execute(hourly)).fetchall() == await _direct(conn)


async def test_retention_keeps_whole_days_and_summaries_outlive_raw_rows(
    database_url: str, db_schema: str, backend: str
) -> None:
    now = datetime.now(UTC)
    async with await _conn(database_url, db_schema) as conn:
        await conn.execute(SEED_SQL)
        # 12 days of events every 7 minutes, up to the start of this hour.
        await _insert(conn, {"t0": _hour(now), "n": 12 * 24 * 60 // 7, "tag": "r"})
        await conn.execute(
            "INSERT INTO dead_letters (received_at, topic, reason, size, payload) VALUES "
            "(now() - interval '40 days', 't', 'old', 1, 'x'), (now(), 't', 'new', 1, 'y')"
        )
        await refresh_summary(conn, "events_hourly", None, _hour(now))
        before = await (
            await conn.execute("SELECT * FROM events_nightly ORDER BY 1, 2, 3, 4")
        ).fetchall()
        assert await set_policy(conn, "events", timedelta(days=5), timedelta(days=2))
        assert not await set_policy(conn, "events", timedelta(days=5), timedelta(days=2))
        result = await maintain(conn, now)
        if backend == "timescaledb":
            # TimescaleDB's own retention job drops whole chunks (days): run it now.
            job = await (
                await conn.execute(
                    "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = "
                    "'policy_retention' AND hypertable_schema = %s AND hypertable_name = 'events'",
                    (db_schema,),
                )
            ).fetchone()
            assert job, "no retention policy on the events hypertable"
            before_rows = (await (await conn.execute("SELECT count(*) FROM events")).fetchone())[0]
            await conn.execute("CALL public.run_job(%s)", (job[0],))
            after_rows = (await (await conn.execute("SELECT count(*) FROM events")).fetchone())[0]
            result["deleted"]["events"] = before_rows - after_rows
        cutoff = datetime.combine((now - timedelta(days=5)).date(), datetime.min.time(), UTC)
        oldest = (await (await conn.execute("SELECT min(ts) FROM events")).fetchone())[0]
        assert oldest >= cutoff and oldest - cutoff < timedelta(minutes=7)
        assert result["deleted"]["events"] > 0
        assert result["deleted"]["dead_letters"] == 1
        # A scheduled refresh recomputes only its window (here the last 3 days, shorter than
        # the retention): the nights whose raw rows are gone keep their counts.
        if backend == "plain":
            await conn.execute(
                "UPDATE summary_registry SET refresh_start_offset = '3 days', last_refresh = NULL"
            )
            result = await maintain(conn, now)
            assert "events_hourly" in result["refreshed"]
        else:  # the continuous aggregate's policy refreshes a trailing window like this one
            await refresh_summary(conn, "events_hourly", now - timedelta(days=3), now)
        after = await (
            await conn.execute("SELECT * FROM events_nightly ORDER BY 1, 2, 3, 4")
        ).fetchall()
        assert after == before
        assert len({r[0] for r in after}) >= 12


async def test_ingest_applies_retention_settings(settings, pool) -> None:
    cfg = settings.ingest.model_copy(
        update={"retention_events_days": 120, "retention_heartbeats_days": 0, "maintenance_s": 0}
    )
    svc = IngestService(settings.model_copy(update={"ingest": cfg}))
    await svc.start()
    try:
        async with pool.connection() as conn:
            rows = dict(
                await (
                    await conn.execute("SELECT table_name, retention FROM storage_policies")
                ).fetchall()
            )
        assert rows["events"] == timedelta(days=120)
        assert rows["heartbeats"] is None
        assert rows["room_states"] == timedelta(days=90)
    finally:
        await svc.stop()


# -- TimescaleDB and plain PostgreSQL: the same results ---------------------------------------


@pytest.fixture(scope="module")
def plain_beside_timescale(timescale_cluster):
    """The session's TimescaleDB cluster, with a database in it that stays plain PostgreSQL."""
    with psycopg.connect(timescale_cluster.url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS plain")
        conn.execute("CREATE DATABASE plain")
    return timescale_cluster


async def test_same_results_on_timescaledb_and_plain_postgresql(plain_beside_timescale) -> None:
    pg = plain_beside_timescale
    ts_url = pg.url
    plain_url = pg.url.rsplit("/", 1)[0] + "/plain"
    schema = "eq"
    await migrate(ts_url, schema)
    await migrate(plain_url, schema, timescale=False)
    now = datetime.now(UTC)
    t0 = _hour(now)
    async with await _conn(ts_url, schema) as ts, await _conn(plain_url, schema) as plain:
        for conn, kind in ((ts, "continuous_aggregate"), (plain, "table")):
            cur = await conn.execute("SELECT DISTINCT kind FROM summary_registry")
            assert {r[0] for r in await cur.fetchall()} == {kind}
        jobs = await (
            await ts.execute(
                "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs "
                "WHERE hypertable_schema = %s OR hypertable_name LIKE '_materialized%%' "
                "ORDER BY 1, 2",
                (schema,),
            )
        ).fetchall()
        procs = {p for p, _h in jobs}
        assert {"policy_retention", "policy_compression"} <= procs

        async def both(query: str, params=None) -> None:
            for conn in (ts, plain):
                await conn.execute(query, params)

        async def same(step: str) -> None:
            a, b = await _results(ts), await _results(plain)
            for q, x, y in zip(QUERIES, a, b, strict=True):
                assert x == y, f"{step}: {q}"

        await both(SEED_SQL)
        for conn in (ts, plain):
            await _insert(conn, {"t0": t0, "n": 10 * 24 * 60 // 7, "tag": "x"})
        await same("all real time")
        for conn in (ts, plain):
            for name in ("events_hourly", "room_states_hourly", "heartbeats_hourly"):
                await refresh_summary(conn, name, t0 - timedelta(days=6), t0 - timedelta(days=1))
        await same("partly materialised")
        late = {"t0": t0 - timedelta(days=3, minutes=2), "n": 50, "tag": "late"}
        for conn in (ts, plain):
            await _insert(conn, late)
        await same("late rows, not refreshed")
        for conn in (ts, plain):
            for name in ("events_hourly", "room_states_hourly", "heartbeats_hourly"):
                await refresh_summary(conn, name, None, t0)
        await same("refreshed")
        # Retention of 7 days: whole chunks (days) on TimescaleDB, whole days on plain.
        await ts.execute(
            "SELECT public.drop_chunks(%s::regclass, older_than => %s)",
            (f"{schema}.events", now - timedelta(days=7)),
        )
        await plain.execute("SELECT storage_set_policy('events', '7 days', NULL)")
        await plain.execute("SELECT storage_retention_run(%s)", (now,))
        await same("after retention")
        # Compression of chunks older than 2 days changes nothing in the answers.
        await ts.execute(
            "SELECT public.compress_chunk(c) FROM public.show_chunks(%s::regclass, older_than => %s) c",
            (f"{schema}.events", now - timedelta(days=2)),
        )
        compressed = (
            await (
                await ts.execute(
                    "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema = %s "
                    "AND hypertable_name = 'events' AND is_compressed",
                    (schema,),
                )
            ).fetchone()
        )[0]
        assert compressed >= 3
        await same("compressed")
        # Ingest's idempotent write into a compressed chunk (an edge replaying old messages).
        for conn in (ts, plain):
            await _insert(conn, {"t0": t0, "n": 10 * 24 * 60 // 7, "tag": "x"}, only_events=True)
        await same("replayed into compressed chunks")


async def test_maintenance_runs_at_start_and_every_interval_of_its_clock(settings, pool) -> None:
    clock = ManualClock()
    maintainer = Maintainer(pool, settings.database_schema, 3600.0, clock)
    maintainer.start()
    try:
        await clock.until_sleeping(1)
        assert maintainer.runs == 1
        await clock.advance(3599)
        assert maintainer.runs == 1
        await clock.advance(1)
        await clock.until_sleeping(1)
        assert maintainer.runs == 2
    finally:
        await maintainer.stop()
