"""Report maths on small hand-computed examples (pure: no database).

Each test writes its worked example out; docs/evaluation.md has the same definitions.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace
from datetime import UTC, date, datetime

import pyarrow.parquet as pq
import pytest

from nattillsyn.evaluation import baseline, metrics, render
from nattillsyn.evaluation.metrics import AlertStats, BaselineTotals, Context, ResidentTotals
from nattillsyn.evaluation.model import Params
from nattillsyn.evaluation.privacy import Pseudonymizer, suppress_cells
from nattillsyn.evaluation.report import Request, compose
from nattillsyn.evaluation.stats import Bootstrap, percentile
from nattillsyn.evaluation.store import Totals
from nattillsyn.settings.evaluation import EvaluationSettings

PARAMS = Params(
    minutes_per_visit=4.0,
    awakening_window_min=15.0,
    k_anonymity=2,
    bootstrap_samples=500,
    confidence=0.95,
)


def ctx(k: int = 2) -> Context:
    return Context(PARAMS.model_copy(update={"k_anonymity": k}), Bootstrap(500, 0.95, seed=1))


def test_percentile_is_linear_interpolation_like_percentile_cont():
    # sorted 10 20 30 40 100: median at rank 2 → 30; p90 at rank 0.9·4 = 3.6 → 40 + 0.6·60 = 76
    xs = [40, 10, 100, 30, 20]
    assert percentile(xs, 0.5) == 30
    assert percentile(xs, 0.9) == pytest.approx(76)
    assert percentile([7], 0.9) == 7
    assert percentile([], 0.5) is None


# Two residents, one night each (the same night as in test_evaluation_db.py):
#   A: 3 rounds (2 digital_ok, 1 physical_needed); visits: 1 round (4 min), 1 alert (5 min)
#      checks at rest: 1 physical (woken), 2 digital (1 woken); coverage 34 200 / 36 000 s
#   B: 3 rounds (2 digital_ok, 1 physical_needed); visits: 1 round (4 min), 1 unplanned (no end)
#      checks at rest: 0 physical, 2 digital (0 woken); paused 3 600 s, covered 32 400 s
A = ResidentTotals(
    "hand", "a", nights=1, rounds=3, rounds_digital=2, digital_ok=2, physical_needed=1,
    visits=2, visits_round=1, visits_alert=1, visits_timed=2, visit_minutes=9.0, alerts=1,
    scheduled_s=36000, paused_s=0, covered_s=34200, checks_physical=1, woken_physical=1,
    checks_digital=2, woken_digital=1, alerts_with_outcome=1, false_alarms=0,
)  # fmt: skip
B = ResidentTotals(
    "hand", "b", nights=1, rounds=3, rounds_digital=3, digital_ok=2, physical_needed=1,
    visits=2, visits_round=1, visits_unplanned=1, visits_timed=1, visit_minutes=4.0, alerts=2,
    scheduled_s=36000, paused_s=3600, covered_s=32400, paused_nights=1, checks_physical=0,
    woken_physical=0, checks_digital=2, woken_digital=0, alerts_with_outcome=1, false_alarms=1,
)  # fmt: skip
ALERTS = AlertStats("hand", alerts=3, residents=2, with_outcome=2, false_alarms=1,
                    ack_median_s=60, ack_p90_s=156, response_median_s=120, response_p90_s=120,
                    resolve_median_s=480, resolve_p90_s=576)  # fmt: skip


def test_unit_summary_worked_example():
    s = metrics.unit_summary("hand", "Hand", [A, B], ALERTS, ctx())
    assert not s.suppressed
    assert (s.residents, s.resident_nights, s.rounds) == (2, 2, 6)
    # visits made: 4 over 2 resident-nights
    assert s.visits == 4
    assert s.visits_by_reason == {"round": 2, "alert": 1, "planned": 0, "unplanned": 1}
    assert s.visits_per_resident_night.value == pytest.approx(2.0)
    # avoided: 4 digital_ok of 6 rounds; minutes saved 4 × 4 min
    assert s.digital_ok == 4
    assert s.avoided_share.value == pytest.approx(4 / 6)
    assert s.staff_minutes_saved == 16
    # staff minutes: 9 + 4 measured, plus one untimed visit at 4 min
    assert s.staff_minutes == pytest.approx(17)
    # awakenings: physical 1/1, digital 1/4; difference 0.75; excess 1 − 1 × 0.25
    assert s.awakening_rate_physical.value == pytest.approx(1.0)
    assert s.awakening_rate_digital.value == pytest.approx(0.25)
    assert s.awakening_difference.value == pytest.approx(0.75)
    assert s.staff_caused_awakenings.value == pytest.approx(0.75)
    # alerts: 3 per 2 nights; false alarms 1 of 2 with outcome; 1 without
    assert s.alerts == 3
    assert s.alerts_per_100_nights.value == pytest.approx(150)
    assert s.false_alarm_share.value == pytest.approx(0.5)
    assert s.alerts_without_outcome == 1
    assert (s.ack_median_s, s.ack_p90_s) == (60, 156)
    # coverage: (34 200 + 32 400) / (36 000 + 36 000 − 3 600)
    assert s.coverage.value == pytest.approx(66600 / 68400)
    assert (s.paused_nights, s.paused_share) == (1, 0.5)


def test_intervals_bracket_the_estimate_and_are_reproducible():
    rows = [
        ResidentTotals(
            "u", str(i), nights=10, visits=10 + 3 * (i % 4), rounds=30, digital_ok=20 + i % 5
        )
        for i in range(12)
    ]
    s1 = metrics.unit_summary("u", "U", rows, None, ctx(5))
    s2 = metrics.unit_summary("u", "U", rows, None, ctx(5))
    e = s1.visits_per_resident_night
    assert e.low < e.value < e.high
    assert s1 == s2  # same seed, same intervals
    # every resident alike: no spread to resample
    same = [ResidentTotals("u", str(i), nights=5, visits=10) for i in range(6)]
    e = metrics.unit_summary("u", "U", same, None, ctx(5)).visits_per_resident_night
    assert e.value == e.low == e.high == pytest.approx(2.0)


def test_bootstrap_ratio_of_sums_weights_nights_not_residents():
    # one resident 1 night with 5 visits, one with 9 nights and 9 visits: (5 + 9) / 10 = 1.4
    rows = [
        ResidentTotals("u", "a", nights=1, visits=5),
        ResidentTotals("u", "b", nights=9, visits=9),
    ]
    assert metrics.unit_summary("u", "U", rows, None, ctx()).visits_per_resident_night.value == (
        pytest.approx(1.4)
    )


def test_small_units_are_suppressed_whole():
    c = ctx(k=5)
    s = metrics.unit_summary("u", "Liten", [A, B], ALERTS, c)
    assert s.suppressed and s.residents is None and s.visits is None
    assert s.visits_per_resident_night.value is None
    assert any("fewer than 5" in n for n in c.notes)
    assert metrics.resident_rows([A, B], c, Pseudonymizer()) is None


def test_alert_cells_primary_and_complementary_suppression():
    cells = [
        AlertStats("u", "possible_fall", "high", alerts=12, residents=6),
        AlertStats("u", "out_of_bed", "medium", alerts=40, residents=3),  # < k: primary
        AlertStats("u", "device_offline", "medium", alerts=9, residents=5),  # smallest other
        AlertStats("u", "camera_covered", "low", alerts=20, residents=8),
    ]
    out = {(c.kind): c for c in metrics.alert_cells(cells, ctx(k=5))}
    assert out["out_of_bed"].suppressed and out["out_of_bed"].alerts is None
    # one hidden cell and a total shown would reveal it: the next-smallest goes too
    assert out["device_offline"].suppressed
    assert not out["possible_fall"].suppressed and out["possible_fall"].alerts == 12
    assert not out["camera_covered"].suppressed
    # two primary suppressions need no complement
    assert suppress_cells([3, 4, 9, 9], lambda n: n, 5) == [True, True, False, False]
    assert suppress_cells([9, 9], lambda n: n, 5) == [False, False]


def test_nights_with_few_residents_are_suppressed():
    nights = [
        metrics.NightTotals(
            "u", date(2025, 3, 1), residents=5, visits=7, scheduled_s=10, covered_s=10
        ),
        metrics.NightTotals("u", date(2025, 3, 2), residents=4, visits=6),
    ]
    rows = metrics.night_rows(nights, ctx(k=5))
    assert rows[0].visits == 7 and rows[0].coverage == 1.0
    assert rows[1].suppressed and rows[1].visits is None


def test_pseudonyms_are_per_export_and_hide_ids():
    p1, p2 = Pseudonymizer(), Pseudonymizer()
    rid = "1f0e6c1e-1111-4222-8333-444455556666"
    assert p1(rid) == p1(rid)
    assert p1(rid) != p2(rid)  # a new key for every export
    assert p1(rid).startswith("P-") and rid[:8] not in p1(rid)
    assert Pseudonymizer(b"k" * 32)(rid) == Pseudonymizer(b"k" * 32)(rid)
    rows = metrics.resident_rows([A, B], ctx(), p1)
    assert [r.pseudonym for r in rows] == sorted(r.pseudonym for r in rows)


def test_before_after_worked_example():
    # before: 2 residents × 10 nights, 3.5 visits a night, minutes 14 a night (B's minutes
    # missing for 5 nights with 4 visits each: 5 × 4 × 4 min = 80 min)
    before = [
        BaselineTotals("u", "B-1", nights=10, visits=35, minutes_known=140),
        BaselineTotals(
            "u", "B-2", nights=10, visits=35, minutes_known=60, visits_without_minutes=20
        ),
    ]
    after = [
        ResidentTotals("u", "a", nights=10, visits=15, visits_timed=15, visit_minutes=60),
        ResidentTotals("u", "b", nights=10, visits=15, visits_timed=10, visit_minutes=40),
    ]
    ba = metrics.before_after(before, after, ctx(), (date(2025, 1, 1), date(2025, 1, 10)),
                              (date(2025, 2, 1), date(2025, 2, 10)))  # fmt: skip
    assert ba.before.visits_per_resident_night.value == pytest.approx(3.5)
    assert ba.before.minutes_per_resident_night.value == pytest.approx((140 + 60 + 80) / 20)
    assert ba.after.visits_per_resident_night.value == pytest.approx(1.5)
    # after minutes: 60 + 40 measured + 5 untimed × 4 = 120 over 20 nights = 6
    assert ba.after.minutes_per_resident_night.value == pytest.approx(6.0)
    assert ba.visits_difference.value == pytest.approx(-2.0)
    assert ba.visits_change.value == pytest.approx(1.5 / 3.5 - 1)
    assert ba.minutes_difference.value == pytest.approx(6.0 - 14.0)
    assert ba.visits_difference.low <= -2.0 <= ba.visits_difference.high
    small = metrics.before_after(before[:1], after, ctx(k=2), (None, None), (date.today(),) * 2)
    assert small.before.suppressed and small.visits_difference.suppressed


BASELINE_OK = """unit,resident,night,planned_visits,unplanned_visits,minutes
hand,B-001,2025-01-10,3,1,14
hand,B-001,2025-01-11,3,0,
hand,B-002,2025-01-10,2,0,7.5
"""


def test_baseline_csv_parses_and_round_trips():
    rows, errors = baseline.parse(BASELINE_OK, today=date(2025, 6, 1))
    assert errors == []
    assert rows[0] == baseline.BaselineRow("hand", "B-001", date(2025, 1, 10), 3, 1, 14.0)
    assert rows[1].minutes is None
    again, errors = baseline.parse(baseline.to_csv(rows), today=date(2025, 6, 1))
    assert again == rows and not errors


def test_baseline_csv_swedish_spreadsheet_dialect():
    text = "\ufeffUnit;Resident;Night;Planned_visits;Unplanned_visits;Minutes\nhand;B-9;2025-01-10;3;0;12,5\n"
    rows, errors = baseline.parse(text, today=date(2025, 6, 1))
    assert not errors and rows[0].minutes == 12.5


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hand,19450312-1234,2025-01-10,3,0,", "personal identity number"),
        ("hand,Astrid Larsson,2025-01-10,3,0,", "code of letters"),
        ("hand,B-1,2025-13-01,3,0,", "night must be a date"),
        ("hand,B-1,2030-01-01,3,0,", "in the future"),
        ("hand,B-1,2025-01-10,-1,0,", "between 0 and 48"),
        ("hand,B-1,2025-01-10,three,0,", "whole number"),
        ("hand,B-1,2025-01-10,3,0,lots", "minutes must be a number"),
        ("other,B-1,2025-01-10,3,0,", "not the unit imported into"),
        ("hand,B-1,2025-01-10,3,0", "expected 6 fields"),
    ],
)
def test_baseline_csv_errors_name_the_line(line, message):
    text = (
        "unit,resident,night,planned_visits,unplanned_visits,minutes\nhand,B-0,2025-01-09,1,0,\n"
        + line
    )
    _rows, errors = baseline.parse(text, today=date(2025, 6, 1), unit="hand")
    assert len(errors) == 1 and errors[0].line == 3 and message in errors[0].message


def test_baseline_csv_header_and_duplicates():
    _, errors = baseline.parse("unit,resident,night\n", today=date(2025, 6, 1))
    assert errors[0].line == 1 and "planned_visits" in errors[0].message
    _, errors = baseline.parse(BASELINE_OK + "hand,B-001,2025-01-10,1,1,\n", today=date(2025, 6, 1))
    assert "same unit, resident and night as line 2" in errors[0].message
    _, errors = baseline.parse("", today=date(2025, 6, 1))
    assert errors


def _report():
    totals = Totals(
        residents={"hand": [A, B]},
        nights={
            "hand": [
                metrics.NightTotals("hand", date(2025, 3, 10), 2, 6, 4, 4, 3, 72000, 3600, 66600, 1)
            ]
        },
        alert_units={"hand": ALERTS},
        alert_cells={"hand": [AlertStats("hand", "possible_fall", "high", 1, 1, 1, 0)]},
        consented={"a", "b"},
    )
    settings = EvaluationSettings(k_anonymity=2, bootstrap_samples=200)
    req = Request("hand", date(2025, 3, 10), date(2025, 3, 10))
    base = (
        [BaselineTotals("hand", "B-1", 5, 20, 80), BaselineTotals("hand", "B-2", 5, 15, 60)],
        None,
        None,
    )
    return compose(
        req, {"hand": "Handräknad"}, totals, base, settings, now=datetime(2025, 3, 11, tzinfo=UTC)
    )


def test_per_resident_tables_need_consent_to_evaluation():
    rows = [replace(A, resident_id=str(i)) for i in range(6)]
    totals = Totals(residents={"hand": rows}, consented={"0", "1", "2", "3", "4"})
    settings = EvaluationSettings(k_anonymity=5, bootstrap_samples=100)
    req = Request("hand", date(2025, 3, 10), date(2025, 3, 10))
    rep = compose(req, {}, totals, ([], None, None), settings)
    assert rep.summary.residents == 6  # everyone counts in aggregates
    assert len(rep.residents) == 5 and any("without consent" in n for n in rep.notes)
    totals.consented = {"0", "1", "2", "3"}  # below k once the others are left out
    assert compose(req, {}, totals, ([], None, None), settings).residents is None


def test_report_renders_html_and_tables_without_ids():
    rep = _report()
    page = render.to_html(rep)
    assert "Handräknad" in page and "Fysiska besök per boendenatt" in page
    assert "2,00" in page or "2.00" in page
    assert "<svg" in page and "<img" not in page  # charts drawn as inline SVG
    english = render.to_html(rep, "en")
    assert "Physical visits per resident-night" in english and "Fysiska besök" not in english
    assert "2.00" in english and "2,00" in page
    tables = render.tables(rep)
    assert set(tables) == {"units", "alerts", "nights", "residents", "before_after"}
    assert rep.differences == [] and rep.resident_nights is None
    assert tables["units"][0]["visits_per_resident_night"] == pytest.approx(2.0)
    assert tables["units"][0]["visits_per_resident_night_low"] is not None
    ids = {r["pseudonym"] for r in tables["residents"]}
    assert "a" not in ids and "b" not in ids and all(p.startswith("P-") for p in ids)
    csv_text = render.to_csv(tables["residents"])
    assert csv_text.splitlines()[0].startswith("pseudonym,nights")
    table = pq.read_table(io.BytesIO(render.to_parquet(tables["units"])))
    assert table.num_rows == 1
    assert math.isclose(table.column("avoided_share").to_pylist()[0], 4 / 6)


def test_unit_difference_worked_example():
    # other unit: two residents, one night each, 1 visit, 3 rounds all digital, fully covered
    other = [
        ResidentTotals("o", r, nights=1, visits=1, rounds=3, digital_ok=3, scheduled_s=36000,
                       covered_s=36000)
        for r in ("c", "d")
    ]  # fmt: skip
    d = metrics.unit_difference("o", "Other", [A, B], other, ctx())
    assert d.visits_per_resident_night.value == pytest.approx(2.0 - 1.0)
    assert d.avoided_share.value == pytest.approx(4 / 6 - 1.0)
    assert d.coverage.value == pytest.approx(66600 / 68400 - 1.0)
    assert d.awakening_rate_physical.value is None  # no physical checks in the other unit
    assert d.visits_per_resident_night.low <= 1.0 <= d.visits_per_resident_night.high
    assert metrics.unit_difference("o", "Other", [A, B], other[:1], ctx()).suppressed


def test_resident_night_microdata_is_pseudonymised_and_withheld_below_k():
    row = {"resident_id": "a", "night": date(2025, 3, 10), "rounds": 3, "digital_ok": 2,
           "physical_needed": 1, "visits": 2, "visits_round": 1, "visits_alert": 1,
           "visits_planned": 0, "visits_unplanned": 0, "visit_minutes": 9.0, "alerts": 1,
           "scheduled_s": 36000.0, "paused_s": 0.0, "covered_s": 34200.0}  # fmt: skip
    p = Pseudonymizer()
    (out,) = metrics.resident_night_rows([row], 2, ctx(), p)
    assert out.pseudonym == p("a") and out.coverage == pytest.approx(0.95) and not out.paused
    assert metrics.resident_night_rows([row], 1, ctx(), p) is None
