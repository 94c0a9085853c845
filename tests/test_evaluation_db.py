"""The evaluation SQL on a hand-built night (real PostgreSQL), and summary == raw.

The worked example (one night, two residents, unit time zone UTC so times read as written):

- Night of 2025-03-10: monitoring 21:00–07:00 = 36 000 s per resident.
- A (room r1): rounds 23:00 digital ok, 02:00 digital ok, 05:00 physical (visit 05:02–05:06);
  in bed from 21:00, up 23:10–23:20 (9.5 min after the 23:00 digital check: woken), possible
  fall alert 01:08 (ack 30 s, staff in the room 01:10 = 120 s, resolved 480 s, needed help),
  up again 05:12 (6 min after the physical visit: woken). No heartbeats 03:00–03:30: 6 buckets
  of 5 min lost, coverage 34 200 s.
- B (room r2): rounds 23:00 digital ok, 02:00 digital → physical needed (up since 01:50; visit
  02:05–02:09 to a resident already up: not counted as a check at rest), 05:00 digital ok
  (up at 05:40, 39.5 min later: not within 15 min, within 40 min). Unplanned visit 03:30 with no
  end. Paused 03:00–04:00 (heartbeats say not monitoring): covered 32 400 of 32 400 s.
  Out-of-bed alerts 01:50:20 (ack 60 s, false alarm; stored without resident: found by room)
  and 05:40:20 (ack 180 s, no outcome).
- Practice round, visit and alert on A: in no figure.

Expected: 6 rounds, 4 digital ok; 4 visits (2 per resident-night); staff minutes 9 + 4 + 4 = 17;
physical checks at rest 1 (woken 1); digital 4 (woken 1 at 15 min, 2 at 40 min); alerts 3,
false-alarm share 1/2; ack median 60 s, p90 156 s; response 120 s; resolve median 480 s, p90
576 s; coverage 66 600 / 68 400; 1 paused night of 2.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from nattillsyn.evaluation import report, store
from nattillsyn.evaluation.baseline import BaselineRow
from nattillsyn.evaluation.store import refresh, refresh_all
from nattillsyn.settings.evaluation import EvaluationSettings

# Storage-related: every database test runs on plain PostgreSQL and on TimescaleDB.
pytestmark = pytest.mark.both_backends

NIGHT = date(2025, 3, 10)
A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
B = uuid.UUID("00000000-0000-4000-8000-00000000000b")
SETTINGS = EvaluationSettings(k_anonymity=2, bootstrap_samples=300, minutes_per_visit=4)


def at(hhmm: str) -> datetime:
    """A time of the night: evening times on 10 March, morning times on 11 March (UTC)."""
    h, m, *s = (int(x) for x in hhmm.split(":"))
    day = NIGHT if h >= 12 else NIGHT + timedelta(days=1)
    return datetime(day.year, day.month, day.day, h, m, s[0] if s else 0, tzinfo=UTC)


def u() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
async def conn(settings):
    c = await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True)
    await c.execute(
        sql.SQL("SET search_path TO {}, public").format(sql.Identifier(settings.database_schema))
    )
    yield c
    await c.close()


async def hand_night(c: psycopg.AsyncConnection) -> None:
    await c.execute("INSERT INTO sites (id, name, timezone) VALUES ('hand', 'Handräknad', 'UTC')")
    for room in ("r1", "r2"):
        await c.execute(
            "INSERT INTO rooms (site_id, id, name) VALUES ('hand', %s, %s)", (room, room)
        )
    for rid, room, name in ((A, "r1", "A"), (B, "r2", "B")):
        await c.execute(
            """INSERT INTO residents (id, site_id, room_id, display_name, monitoring_active)
               VALUES (%s, 'hand', %s, %s, true)""",
            (rid, room, name),
        )
    rounds = {}
    for key, res, room, sched, mode, produced, decision, practice in (
        ("RA1", A, "r1", "23:00", "digital", "23:00:30", "digital_ok", False),
        ("RA2", A, "r1", "02:00", "digital", "02:00:30", "digital_ok", False),
        ("RA3", A, "r1", "05:00", "physical", "05:00:10", "physical_needed", False),
        ("RAP", A, "r1", "03:00", "digital", "03:00:30", "digital_ok", True),
        ("RB1", B, "r2", "23:00", "digital", "23:00:30", "digital_ok", False),
        ("RB2", B, "r2", "02:00", "digital", "02:00:30", "physical_needed", False),
        ("RB3", B, "r2", "05:00", "digital", "05:00:30", "digital_ok", False),
    ):
        rounds[key] = u()
        await c.execute(
            """INSERT INTO rounds (id, site, room, resident_id, scheduled_at, mode, produced_at,
                                   summary, decision, practice)
               VALUES (%s, 'hand', %s, %s, %s, %s, %s, '', %s, %s)""",
            (rounds[key], room, res, at(sched), mode, at(produced), decision, practice),
        )
    alerts = {}
    for key, res, room, kind, prio, start, ack, resolved, outcome, practice in (
        ("X", A, "r1", "possible_fall", "high", "01:08:00", "01:08:30", "01:16:00", "needed_help", False),
        ("Y", None, "r2", "out_of_bed", "medium", "01:50:20", "01:51:20", "01:55:20", "false_alarm", False),
        ("Z", B, "r2", "out_of_bed", "medium", "05:40:20", "05:43:20", "05:50:20", None, False),
        ("P", A, "r1", "possible_fall", "high", "03:00:00", "03:00:10", "03:01:00", "false_alarm", True),
    ):  # fmt: skip
        alerts[key] = u()
        await c.execute(
            """INSERT INTO alerts (id, site, room, kind, priority, status, title, started_at,
                                   acknowledged_at, resolved_at, outcome, resident_id, practice)
               VALUES (%s, 'hand', %s, %s, %s, 'resolved', 't', %s, %s, %s, %s, %s, %s)""",
            (
                alerts[key],
                room,
                kind,
                prio,
                at(start),
                at(ack),
                at(resolved),
                outcome,
                res,
                practice,
            ),
        )
    for res, room, start, end, reason, round_key, alert_key, practice in (
        (A, "r1", "05:02", "05:06", "round", "RA3", None, False),
        (A, "r1", "01:10", "01:15", "alert", None, "X", False),
        (B, "r2", "02:05", "02:09", "round", "RB2", None, False),
        (B, "r2", "03:30", None, "unplanned", None, None, False),
        (A, "r1", "04:00", "04:03", "planned", None, None, True),
    ):
        await c.execute(
            """INSERT INTO visits (id, site, room, resident_id, started_at, ended_at, by_user,
                                   reason, round_id, alert_id, practice)
               VALUES (%s, 'hand', %s, %s, %s, %s, 'natt', %s, %s, %s, %s)""",
            (u(), room, res, at(start), at(end) if end else None, reason,
             rounds.get(round_key), alerts.get(alert_key), practice),
        )  # fmt: skip
    for seq, (room, ts, state) in enumerate((
        ("r1", "21:00", "in_bed"), ("r1", "23:10", "out_of_bed"), ("r1", "23:20", "in_bed"),
        ("r1", "01:05", "out_of_bed"), ("r1", "01:10:30", "present"), ("r1", "01:20", "in_bed"),
        ("r1", "05:02:30", "present"), ("r1", "05:06", "in_bed"), ("r1", "05:12", "out_of_bed"),
        ("r2", "21:30", "in_bed"), ("r2", "01:50", "out_of_bed"), ("r2", "02:05:30", "present"),
        ("r2", "02:09", "out_of_bed"), ("r2", "02:15", "in_bed"), ("r2", "05:40", "out_of_bed"),
    ), start=1):  # fmt: skip
        await c.execute(
            """INSERT INTO room_states (ts, id, site, room, device, session, seq, state, since,
                                        confidence, payload)
               VALUES (%s, %s, 'hand', %s, %s, 1, %s, %s, %s, 0.9, '{}')""",
            (at(ts), u(), room, "d" + room[1], seq, state, at(ts)),
        )
    await c.execute(
        """INSERT INTO monitoring_pauses (resident_id, starts_at, ends_at, reason)
           VALUES (%s, %s, %s, 'boendes önskan')""",
        (B, at("03:00"), at("04:00")),
    )
    # Heartbeats every minute 20:30–07:30; A silent 03:00–03:30, B not monitoring 03:00–04:00.
    await c.execute(
        """INSERT INTO heartbeats (ts, id, site, room, device, session, seq, payload)
           SELECT g, gen_random_uuid(), 'hand', r.room, r.device, 1, 0,
                  jsonb_build_object('monitoring',
                      NOT (r.room = 'r2' AND g >= %(p0)s AND g < %(p1)s))
           FROM (VALUES ('r1', 'd1'), ('r2', 'd2')) r (room, device),
                generate_series(%(h0)s::timestamptz, %(h1)s::timestamptz, interval '1 minute') g
           WHERE NOT (r.room = 'r1' AND g >= %(o0)s AND g < %(o1)s)""",
        {"h0": at("20:30"), "h1": at("07:30"), "o0": at("03:00"), "o1": at("03:30"),
         "p0": at("03:00"), "p1": at("04:00")},
    )  # fmt: skip


async def build(c, source="summary", settings=SETTINGS) -> report.Report:
    req = report.Request("hand", NIGHT, NIGHT)
    return await report.build(c, req, settings, source=source)


async def test_worked_example_from_the_database(conn):
    await hand_night(conn)
    rep = await build(conn)
    s = rep.summary
    assert (s.residents, s.resident_nights, s.rounds, s.digital_ok, s.physical_needed) == (
        2,
        2,
        6,
        4,
        2,
    )
    assert s.visits == 4
    assert s.visits_by_reason == {"round": 2, "alert": 1, "planned": 0, "unplanned": 1}
    assert s.visits_per_resident_night.value == pytest.approx(2.0)
    assert s.avoided_share.value == pytest.approx(4 / 6)
    assert s.staff_minutes_saved == pytest.approx(16)
    assert s.staff_minutes == pytest.approx(17)
    assert (s.checks_physical, s.checks_digital) == (1, 4)
    assert s.awakening_rate_physical.value == pytest.approx(1.0)
    assert s.awakening_rate_digital.value == pytest.approx(0.25)
    assert s.staff_caused_awakenings.value == pytest.approx(0.75)
    assert s.alerts == 3 and s.alerts_without_outcome == 1
    assert s.false_alarm_share.value == pytest.approx(0.5)
    assert (s.ack_median_s, s.ack_p90_s) == (pytest.approx(60), pytest.approx(156))
    assert (s.response_median_s, s.response_p90_s) == (pytest.approx(120), pytest.approx(120))
    assert (s.resolve_median_s, s.resolve_p90_s) == (pytest.approx(480), pytest.approx(576))
    assert s.coverage.value == pytest.approx(66600 / 68400)
    assert (s.paused_nights, s.paused_share) == (1, 0.5)
    cells = {c.kind: c for c in rep.alerts}
    assert cells["possible_fall"].suppressed  # one resident < k = 2; its complement too
    assert cells["out_of_bed"].suppressed
    night = rep.nights[0]
    assert (night.night, night.residents, night.visits, night.rounds) == (NIGHT, 2, 4, 6)

    # The awakening window is a report parameter: at 40 min B's 05:40 counts as well.
    wide = await build(conn, settings=SETTINGS.model_copy(update={"awakening_window_min": 40}))
    assert wide.summary.awakening_rate_digital.value == pytest.approx(0.5)

    # Summary tables and raw tables give the same report.
    raw = await build(conn, source="raw")
    dump = lambda r: r.model_dump(exclude={"generated_at", "source", "residents"})  # noqa: E731
    assert _close(dump(rep), dump(raw))


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


async def test_changes_mark_nights_dirty_and_refresh_catches_up(conn):
    await hand_night(conn)
    await build(conn)
    cur = await conn.execute("SELECT count(*) FROM eval_dirty")
    assert (await cur.fetchone())[0] == 0
    # An outcome given afterwards (alerting updates the alert): the night is dirty again.
    await conn.execute("UPDATE alerts SET outcome = 'false_alarm' WHERE outcome IS NULL")
    cur = await conn.execute("SELECT site, night FROM eval_dirty")
    assert await cur.fetchall() == [("hand", NIGHT)]
    rep = await build(conn)
    assert rep.summary.false_alarm_share.value == pytest.approx(2 / 3)
    # A pause added later, too.
    await conn.execute(
        "INSERT INTO monitoring_pauses (resident_id, starts_at, ends_at) VALUES (%s, %s, %s)",
        (A, at("06:00"), at("07:00")),
    )
    rep = await build(conn)
    assert rep.summary.paused_nights == 2
    # A visit time corrected into the next night: both nights are recomputed, the check moves.
    await conn.execute(
        """UPDATE visits SET started_at = started_at + interval '1 day',
                             ended_at = ended_at + interval '1 day'
           WHERE reason = 'round' AND room = 'r1' AND NOT practice"""
    )
    cur = await conn.execute("SELECT night FROM eval_dirty ORDER BY night")
    assert [r[0] for r in await cur.fetchall()] == [NIGHT, NIGHT + timedelta(days=1)]
    rep = await build(conn)
    assert rep.summary.visits == 3 and rep.summary.checks_physical == 0
    cur = await conn.execute("SELECT night FROM eval_checks WHERE kind = 'physical'")
    assert sorted(r[0] for r in await cur.fetchall()) == [NIGHT, NIGHT + timedelta(days=1)]
    # Telemetry older than the lookback needs a full refresh (documented).
    await conn.execute(
        """INSERT INTO room_states (ts, id, site, room, device, session, seq, state, since,
                                    confidence, payload)
           VALUES (%s, gen_random_uuid(), 'hand', 'r2', 'd2', 1, 99, 'out_of_bed', %s, 0.9, '{}')""",
        (at("23:05"), at("23:05")),
    )
    assert (await build(conn)).summary.awakening_rate_digital.value == pytest.approx(0.25)
    assert await refresh_all(conn) == 3  # A now has a second night
    assert (await build(conn)).summary.awakening_rate_digital.value == pytest.approx(0.5)


async def test_migration_marks_existing_history_dirty_and_refresh_is_idempotent(conn):
    await hand_night(conn)
    first = await refresh(conn)
    assert first == 2
    again = await refresh(conn)  # only the telemetry lookback (nothing that recent here)
    assert again == 0
    cur = await conn.execute("SELECT count(*) FROM eval_checks")
    assert (await cur.fetchone())[0] == 6  # 2 physical (round visits) + 4 digital ok


async def test_baseline_store_replaces_same_resident_night(conn):
    await conn.execute("INSERT INTO sites (id, name) VALUES ('hand', 'H')")
    rows = [BaselineRow("hand", "B-1", date(2025, 1, d), 3, 1, 12.0) for d in range(1, 6)]
    await store.save_baseline(conn, "hand", rows, by="test")
    await store.save_baseline(
        conn, "hand", [BaselineRow("hand", "B-1", date(2025, 1, 1), 2, 0, None)], by="test"
    )
    totals, first, last = await store.baseline_totals(conn, "hand")
    assert (first, last) == (date(2025, 1, 1), date(2025, 1, 5))
    (t,) = totals
    assert (t.nights, t.visits, t.minutes_known, t.visits_without_minutes) == (5, 18, 48.0, 2)
    cur = await conn.execute("SELECT count(*) FROM baseline_imports")
    assert (await cur.fetchone())[0] == 2
