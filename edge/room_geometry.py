"""Box and grid helpers of the room analysis: regions of movement, bands, overlaps."""

from __future__ import annotations

from collections import deque

import numpy as np

from .detector import Box


def rest_region(moves: deque, fallback: Box, span_s: float = 0.6) -> Box:
    """Union of the clear movements in the last `span_s` before the rest."""
    if not moves:
        return fallback
    last_t = moves[-1][0]
    boxes = [b for t, b in moves if t >= last_t - span_s]
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def densest_band(cells: np.ndarray, rows: int) -> float:
    """Mean of the densest band of `rows` consecutive rows of `cells` (0 if empty)."""
    if not cells.size:
        return 0.0
    per_row = cells.mean(axis=1)
    k = min(rows, per_row.size)
    sums = np.convolve(per_row, np.ones(k), mode="valid") / k
    return float(sums.max())


def beside(box: Box, ref: Box, margin: float, vmargin: float | None = None) -> bool:
    """Whether `box` overlaps `ref` widened by `margin` horizontally and `vmargin`
    (default: `margin`) vertically, in image sizes.

    Someone seated at the other side of the room is beyond it horizontally; someone
    walking past behind a person lying on the floor is above them in the image (their
    region ends above where the person lies). Getting up starts where the person lies,
    so its motion overlaps that place."""
    vm = margin if vmargin is None else vmargin
    return (
        box[0] <= ref[0] + ref[2] + margin
        and box[0] + box[2] >= ref[0] - margin
        and box[1] <= ref[1] + ref[3] + vm
        and box[1] + box[3] >= ref[1] - vm
    )


def lower_part(m: np.ndarray, share: float = 0.4) -> np.ndarray | None:
    """The rows of `m` holding the lowest `share` of its mass (None if it is empty)."""
    rows = m.sum(axis=1)
    total = float(rows.sum())
    if total <= 1e-6:
        return None
    cut = int(np.searchsorted(np.cumsum(rows), (1 - share) * total))
    out = np.zeros_like(m)
    out[cut:] = m[cut:]
    return out


def union(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return np.maximum(a, b)
