"""The arithmetic of `nattillsyn edge evaluate`: Wilson interval, balanced presence,
false falls per hour of real video, on_floor after a fall, datasets apart."""

from __future__ import annotations

import math

import pytest

from nattillsyn.edge.evaluate import (
    Label,
    presence_counts,
    read_labels,
    score_on_floor,
)
from nattillsyn.edge.scoring import (
    PresenceCounts,
    Tally,
    by_dataset,
    figures,
    on_floor_reached,
    per_hour,
    wilson,
)
from nattillsyn.protocol import RoomStateName


def test_wilson_matches_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553-0.3662
    lo, hi = wilson(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
    # all found is not certainty: 5/5 -> [0.566, 1]
    lo, hi = wilson(5, 5)
    assert lo == pytest.approx(0.5655, abs=1e-4) and hi == 1.0
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson(0, 0) is None
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_wilson_is_symmetric_and_narrows_with_n() -> None:
    lo1, hi1 = wilson(3, 10)
    lo2, hi2 = wilson(7, 10)
    assert math.isclose(lo1, 1 - hi2) and math.isclose(hi1, 1 - lo2)
    assert wilson(90, 100)[1] - wilson(90, 100)[0] < wilson(9, 10)[1] - wilson(9, 10)[0]


def test_balanced_accuracy_and_trivial_baselines() -> None:
    # 90 present frames all right, 10 empty frames all wrong: 0.9 accurate, but no
    # better than "always present" and balanced accuracy says so.
    c = PresenceCounts(present=90, present_agree=90, empty=10, empty_agree=0)
    assert c.accuracy == 0.9 and c.always_present == 0.9 and c.always_empty == 0.1
    assert c.balanced_accuracy == 0.5
    good = PresenceCounts(90, 88, 10, 9)
    assert good.balanced_accuracy == pytest.approx((88 / 90 + 9 / 10) / 2)
    # one class only: balanced accuracy is undefined, not 1.0
    assert PresenceCounts(50, 50, 0, 0).balanced_accuracy is None
    assert (c + good).scored == 200


def test_presence_counts_split_by_truth() -> None:
    rows = [Label(0.0, 3.0, "person"), Label(3.0, 6.0, "empty")]
    S = RoomStateName
    # says present throughout: right on present frames, wrong on empty ones
    c = presence_counts(rows, [(0.0, S.present)], 10.0, 60)
    assert c.present_agree == c.present > 0 and c.empty > 0 and c.empty_agree == 0
    # first 1.0 s and 0.5 s around the boundary at 3.0 s are not scored
    assert c.present == len([i for i in range(60) if 1.0 <= i / 10 < 2.5])
    c = presence_counts(rows, [(0.0, S.present), (3.0, S.empty)], 10.0, 60)
    assert c.empty_agree == c.empty


def test_false_falls_count_real_video_only() -> None:
    assert per_hour(1, 1800.0) == 2.0
    assert per_hour(0, 0.0) is None
    # video_s is the clip's own length: the held last frame adds nothing
    f = figures(Tally(false_falls=1, video_s=36.0, clips=1))
    assert f["false_falls_per_hour"] == 100.0


def test_on_floor_reached_inside_the_window() -> None:
    states = [(0.0, "present"), (40.0, "on_floor"), (50.0, "present")]
    assert on_floor_reached(states, 5.0, 45.0)
    assert not on_floor_reached(states, 5.0, 39.9)  # too late
    assert on_floor_reached(states, 45.0, 46.0)  # entered before, still held
    assert not on_floor_reached(states, 51.0, 60.0)  # got up before the window
    rows = [Label(0.0, 2.0, "person"), Label(2.0, 6.0, "fall")]
    # deadline: fall end 6 s + confirmation 30 s + 10 s
    assert score_on_floor(rows, [(0.0, "present"), (45.9, "on_floor")], 30.0) == 1
    assert score_on_floor(rows, [(0.0, "present"), (46.1, "on_floor")], 30.0) == 0


def test_datasets_apart_and_overall() -> None:
    a = Tally(falls=5, detected=5, on_floor=5, video_s=60.0, clips=5)
    b = Tally(falls=6, detected=2, on_floor=3, false_falls=1, video_s=120.0, clips=12)
    per, total = by_dataset([("a", a), ("b", b)])
    assert per["a"]["fall_recall"] == 1.0 and per["b"]["fall_recall"] == pytest.approx(0.3333)
    assert per["b"]["on_floor_rate"] == 0.5
    o = figures(total + Tally(activity_clips=1, on_floor_on_activity=1, clips=1))
    assert o["on_floor_on_activity_clips"] == 1 and o["activity_clips"] == 1
    o = figures(total)
    assert o["falls_total"] == 11 and o["falls_detected"] == 7 and o["clips"] == 17
    assert o["fall_recall_ci95"][0] < 7 / 11 < o["fall_recall_ci95"][1]
    assert o["false_falls_per_hour"] == 20.0


def test_bad_label_rows_are_refused(tmp_path) -> None:
    p = tmp_path / "labels.csv"
    p.write_text("clip,start_s,end_s,label\na.mp4,0,1,falling\n")
    with pytest.raises(ValueError, match=r"labels\.csv:2"):
        read_labels(p)
    p.write_text("clip,start_s,end_s,label,dataset\na.mp4,0,1,fall,x\n")
    assert read_labels(p)["a.mp4"][0].label == "fall"
