"""The synthetic generator (pure) and the CLI commands that use it (real PostgreSQL)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from nattillsyn.app import cli
from nattillsyn.evaluation import synthetic

# Storage-related: every database test runs on plain PostgreSQL and on TimescaleDB.
pytestmark = pytest.mark.both_backends


def _gen(seed: int = 3, nights: int = 30):
    units = synthetic.make_units(2, 10, seed=seed)
    return units, list(synthetic.generate(units, date(2025, 1, 1), nights, seed=seed))


def test_generator_is_deterministic_and_plausible():
    _units, data = _gen()
    _, again = _gen()
    assert [d.rounds for d in data] == [d.rounds for d in again]
    assert [d.states for d in data] == [d.states for d in again]
    for d in data:
        resident_nights = len(d.unit.residents) * 30
        digital_ok = sum(1 for r in d.rounds if r[9] == "digital_ok")
        assert 0.3 < digital_ok / len(d.rounds) < 0.95
        assert 0.5 < len(d.visits) / resident_nights < 3.5
        assert 0 < len(d.alerts) / resident_nights < 2
        outcomes = {a[13] for a in d.alerts}
        assert {"false_alarm", "needed_help", None} <= outcomes
        assert sum(1 for a in d.alerts if a[15]) <= 0.05 * len(d.alerts) + 2  # few practice
        # every visit for a round points at a round that needed one
        needed = {r[0] for r in d.rounds if r[9] == "physical_needed"}
        assert {v[8] for v in d.visits if v[7] == "round"} == needed
        # baseline: before the first night, every agreed time physical
        assert max(b.night for b in d.baseline) == date(2024, 12, 31)
        assert all(b.planned_visits >= 2 for b in d.baseline)
        # no state while paused (the camera is off), states in time order per room
        paused = [(p[1], p[2], p[3]) for p in d.pauses]
        rooms = {r.id: r.room for r in d.unit.residents}
        for rid, start, end in paused:
            assert not [s for s in d.states if s[3] == rooms[rid] and start <= s[0] < end]


def test_different_units_have_different_character():
    units, _ = _gen()
    assert units[0].site != units[1].site
    assert units[0].digital_share != units[1].digital_share
    assert all("syntetisk" in r.name for u in units for r in u.residents)


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("NATTILLSYN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NATTILLSYN_DATABASE_SCHEMA", settings.database_schema)
    monkeypatch.setenv("NATTILLSYN_EVALUATION__BOOTSTRAP_SAMPLES", "200")
    return settings


def test_cli_synthesize_report_and_baseline_import(env, tmp_path, capsys):
    last = date.today() - timedelta(days=1)
    base = tmp_path / "baseline.csv"
    assert cli.main(["synthesize", "--units", "2", "--residents", "6", "--nights", "14",
                     "--baseline-nights", "7", "--baseline-csv", str(base)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "bjorkbacken" in out and "summaries: 168 resident-nights" in out
    assert base.read_text().startswith("unit,resident,night,planned_visits")
    # the written baseline imports again (replacing the same resident-nights)
    assert cli.main(["baseline-import", str(base)]) == 0
    assert "bjorkbacken: 42 rows imported" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "unit,resident,night,planned_visits,unplanned_visits\nbjorkbacken,X,2099-01-01,1,0\n"
    )
    assert cli.main(["baseline-import", str(bad)]) == 1
    assert "bad.csv:2: night 2099-01-01 is in the future" in capsys.readouterr().out

    out_dir = tmp_path / "rapport"
    args = ["report", "--unit", "bjorkbacken", "--from", str(last - timedelta(days=13)),
            "--to", str(last), "--out", str(out_dir), "--format", "html,csv,parquet,json"]  # fmt: skip
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "6 residents, 84 resident-nights" in printed
    names = {p.name for p in out_dir.iterdir()}
    assert {"report.html", "report.json", "units.csv", "units.parquet", "residents.csv",
            "nights.parquet", "before_after.csv", "resident_nights.parquet",
            "differences.csv"} <= names  # fmt: skip
    html = (out_dir / "report.html").read_text()
    assert "Björkbacken" in html and "<polyline" in html  # the weekly trend, as SVG
    assert cli.main([*args[:2], "nowhere", *args[3:]]) == 2
    assert "no unit 'nowhere'" in capsys.readouterr().err
