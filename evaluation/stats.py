"""Estimates with bootstrap confidence intervals; pure (NumPy only).

Nights of one resident are not independent (the same person, the same room), so intervals come
from a *cluster* bootstrap: residents are resampled with replacement, each bringing all their
nights. A statistic is a function of column sums, evaluated on the full data for the point
estimate and on every resample for the percentile interval. Two groups (before/after, two
units) are resampled independently of each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Sums = Mapping[str, np.ndarray]  # column name → sums (scalar or one per resample)
Statistic = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Interval:
    value: float | None
    low: float | None
    high: float | None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    pos = (len(xs) - 1) * q
    lo = int(np.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


class Bootstrap:
    """Resampling weights drawn once per group, so every statistic of a report shares them."""

    def __init__(self, samples: int, confidence: float, seed: int) -> None:
        self.samples = samples
        self.confidence = confidence
        self.rng = np.random.default_rng(seed)

    def weights(self, n: int) -> np.ndarray:
        """samples × n: how often each resident appears in each resample."""
        if n == 0:
            return np.zeros((self.samples, 0))
        return self.rng.multinomial(n, np.full(n, 1.0 / n), size=self.samples).astype(float)

    def _bounds(self, dist: np.ndarray) -> tuple[float | None, float | None]:
        dist = dist[np.isfinite(dist)]
        if dist.size == 0:
            return None, None
        alpha = (1.0 - self.confidence) / 2.0
        lo, hi = np.quantile(dist, [alpha, 1.0 - alpha])
        return float(lo), float(hi)

    def estimate(
        self,
        groups: Sequence[tuple[Mapping[str, np.ndarray], np.ndarray]],
        stat: Statistic,
    ) -> Interval:
        """`groups`: per group its per-resident columns and weights; `stat(*sums)` → value."""
        full = [
            {k: np.asarray(v, dtype=float).sum() for k, v in cols.items()} for cols, _ in groups
        ]
        point = np.asarray(stat(*full), dtype=float)
        if not np.isfinite(point):
            return Interval(None, None, None)
        resampled = [
            {k: w @ np.asarray(v, dtype=float) for k, v in cols.items()} for cols, w in groups
        ]
        low, high = self._bounds(np.asarray(stat(*resampled), dtype=float))
        return Interval(float(point), low, high)
