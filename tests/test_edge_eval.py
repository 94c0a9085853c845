"""The measured targets of the edge analysis on the shared real clips (MANIFEST rules)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nattillsyn.edge.evaluate import (
    FallEvent,
    Label,
    load_room_config,
    read_labels,
    score_falls,
    score_presence,
)
from nattillsyn.protocol import RoomStateName

pytestmark = pytest.mark.clips

ZONES = Path(__file__).parent / "data" / "zones"


def test_zone_files_are_room_configurations_for_every_clip(clips_dir) -> None:
    labels = read_labels(clips_dir / "labels.csv")
    for clip in labels:
        cfg = load_room_config(ZONES / f"{Path(clip).stem}.json")
        assert cfg.zones, clip


def test_evaluate_reaches_the_targets(clips_dir) -> None:
    """`nattillsyn edge evaluate <clips> --zones tests/data/zones --json`, as the lead runs it."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nattillsyn.app.cli",
            "edge",
            "evaluate",
            str(clips_dir),
            "--zones",
            str(ZONES),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert "presence" in out.stdout.splitlines()[0]  # the per-clip table comes first
    assert summary["clips"] == 10
    assert summary["presence_accuracy"] >= 0.95, summary
    assert summary["falls_total"] == 5
    assert summary["falls_detected"] == 5, summary
    assert summary["false_fall_events"] == 0, summary
    assert summary["seconds_processed"] > 200
    # the figures that cannot flatter, overall and per dataset, beside the MANIFEST's
    assert summary["fall_recall_ci95"][0] < 1.0 and summary["on_floor_after_falls"] == 5
    assert summary["presence_balanced_accuracy"] >= 0.95, summary
    assert summary["baseline_always_present_accuracy"] < summary["presence_accuracy"]
    assert summary["false_falls_per_hour"] == 0.0 and summary["video_hours"] < 0.06
    (ds,) = summary["datasets"].values()
    assert ds["falls_detected"] == 5 and ds["presence_accuracy"] == summary["presence_accuracy"]
    for clip in summary["per_clip"]:
        # a fall is confirmed after the default 30 s of not getting up, not much later
        assert all(30 <= d <= 40 for d in clip["time_to_confirm_s"]), clip


def test_scoring_rules() -> None:
    rows = [Label(0.0, 2.0, "person"), Label(2.0, 4.0, "empty"), Label(4.5, 6.0, "fall")]
    S = RoomStateName
    states = [(0.0, S.unknown), (0.4, S.present), (2.6, S.left_room), (4.6, S.present)]
    scored, agree = score_presence(rows, states, 10.0, 60)
    # scored: 1.0–1.4 (person), 2.6–3.4 (empty), 5.1–6.0 minus the gap boundaries
    times = [i / 10 for i in range(60)]
    expect = [
        t
        for t in times
        if t >= 1.0
        and all(abs(t - b) > 0.5 for b in (2.0, 4.0, 4.5))
        and any(r.start <= t <= r.end for r in rows)
    ]
    assert scored == len(expect) and agree == scored
    falls = [FallEvent(3.6, 40.0, 1.0, None), FallEvent(3.4, 41.0, 1.0, None)]
    assert score_falls(rows, falls) == (1, 1, 1, [35.5])
