"""Figures of `nattillsyn edge evaluate` that cannot flatter: pure arithmetic, no I/O.

- Fall recall with a 95 % Wilson score interval (honest for small counts: 5/5 is
  [0.57, 1.0], not "100 %").
- False falls per hour of real video: the held last frame is not video.
- `on_floor` after a fall: the room state reached `on_floor` between the fall's
  start and the end of the hold (confirmation time + 10 s after the clip), also
  when the drop itself was missed.
- Presence as balanced accuracy over empty and present frames, beside the trivial
  baselines "always present" and "always empty" (whose balanced accuracy is 0.5 by
  definition, whose plain accuracy shows how much the class mix alone scores).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TypeVar

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for k successes in n trials (None without trials)."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside 0..{n}")
    p = k / n
    z2 = z * z
    den = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


_D = TypeVar("_D")


def field_sum(a: _D, b: _D) -> _D:
    """Field by field sum of two instances of one dataclass (counts and seconds add up)."""
    return type(a)(*(getattr(a, f.name) + getattr(b, f.name) for f in fields(a)))


@dataclass(frozen=True)
class PresenceCounts:
    """Scored frames split by truth: present (any label but `empty`) and empty."""

    present: int = 0
    present_agree: int = 0
    empty: int = 0
    empty_agree: int = 0

    def __add__(self, other: PresenceCounts) -> PresenceCounts:
        return field_sum(self, other)

    @property
    def scored(self) -> int:
        return self.present + self.empty

    @property
    def agree(self) -> int:
        return self.present_agree + self.empty_agree

    @property
    def accuracy(self) -> float | None:
        return self.agree / self.scored if self.scored else None

    @property
    def balanced_accuracy(self) -> float | None:
        """Mean of the recall on present and on empty frames; None unless both occur
        (with one class only, balanced accuracy says nothing a baseline would not)."""
        if not self.present or not self.empty:
            return None
        return (self.present_agree / self.present + self.empty_agree / self.empty) / 2

    @property
    def always_present(self) -> float | None:
        """Plain accuracy of the trivial answer "always present"."""
        return self.present / self.scored if self.scored else None

    @property
    def always_empty(self) -> float | None:
        return self.empty / self.scored if self.scored else None


def on_floor_reached(
    states: list[tuple[float, str]], start: float, deadline: float, on_floor: str = "on_floor"
) -> bool:
    """Whether the state timeline [(t, state)] is `on_floor` at any moment of
    [start, deadline] (entered inside it, or entered before and still held)."""
    current = None
    for t, s in states:
        if t > deadline:
            break
        if t >= start and s == on_floor:
            return True
        current = s
    return current == on_floor


def per_hour(events: int, video_s: float) -> float | None:
    return events * 3600.0 / video_s if video_s > 0 else None


@dataclass(frozen=True)
class Tally:
    """What one clip (or a sum of clips) contributes to the figures."""

    falls: int = 0
    detected: int = 0
    on_floor: int = 0
    false_falls: int = 0
    false_falls_on_activity: int = 0
    video_s: float = 0.0
    activity_video_s: float = 0.0
    presence: PresenceCounts = PresenceCounts()
    clips: int = 0
    activity_clips: int = 0
    on_floor_on_activity: int = 0  # clips without a fall whose state still reached on_floor

    def __add__(self, o: Tally) -> Tally:
        return field_sum(self, o)


def _r(x: float | None, nd: int = 4) -> float | None:
    return round(x, nd) if x is not None else None


def figures(t: Tally) -> dict:
    """The figures of one dataset or of all: JSON-ready."""
    ci = wilson(t.detected, t.falls)
    p = t.presence
    return {
        "clips": t.clips,
        "falls_total": t.falls,
        "falls_detected": t.detected,
        "fall_recall": _r(t.detected / t.falls) if t.falls else None,
        "fall_recall_ci95": [_r(ci[0]), _r(ci[1])] if ci else None,
        "on_floor_after_falls": t.on_floor,
        "on_floor_rate": _r(t.on_floor / t.falls) if t.falls else None,
        "false_fall_events": t.false_falls,
        "false_fall_events_on_activity_clips": t.false_falls_on_activity,
        "activity_clips": t.activity_clips,
        "on_floor_on_activity_clips": t.on_floor_on_activity,
        "video_hours": _r(t.video_s / 3600.0, 5),
        "activity_video_hours": _r(t.activity_video_s / 3600.0, 5),
        "false_falls_per_hour": _r(per_hour(t.false_falls, t.video_s), 3),
        "frames_scored": p.scored,
        "presence_accuracy": _r(p.accuracy),
        "presence_balanced_accuracy": _r(p.balanced_accuracy),
        "presence_frames_present": p.present,
        "presence_frames_empty": p.empty,
        "presence_recall_present": _r(p.present_agree / p.present) if p.present else None,
        "presence_recall_empty": _r(p.empty_agree / p.empty) if p.empty else None,
        "baseline_always_present_accuracy": _r(p.always_present),
        "baseline_always_empty_accuracy": _r(p.always_empty),
        "baseline_balanced_accuracy": 0.5 if p.balanced_accuracy is not None else None,
    }


def by_dataset(items: Iterable[tuple[str, Tally]]) -> tuple[dict, Tally]:
    """({dataset: figures}, overall tally) from (dataset, clip tally) pairs."""
    sums: dict[str, Tally] = {}
    for name, t in items:
        sums[name] = sums.get(name, Tally()) + t
    total = Tally()
    for t in sums.values():
        total = total + t
    return {k: figures(v) for k, v in sorted(sums.items())}, total
