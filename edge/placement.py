"""Placement aid for zones, without ever showing the resident.

An administrator places zones (bed, door, chair, …) on a coarse map the device
computes itself, answered once to the `zone_map` command and never stored:

- `motion`: where motion has been seen since the agent started (a heat map of
  paths, the bed, the door), accumulated over time so no single moment shows;
- `edges`: the outlines of the furniture from the learned background, only while
  the room is empty (no person can be in it);
- `passages`: where tracks came into or went out of view (door candidates).

Each map is GRID_W×GRID_H cells quantised to one digit 0–9 per cell, one string
per row (≈800 bytes a map): enough to draw polygons on, far too coarse to
recognise anybody or anything personal.
"""

from __future__ import annotations

import numpy as np

from .zones import GRID_H, GRID_W

EMPTY_STATES = frozenset({"empty", "left_room"})


def _digits(m: np.ndarray) -> list[str]:
    top = float(m.max())
    if top <= 0:
        return ["0" * m.shape[1]] * m.shape[0]
    q = np.clip(np.round(m / top * 9), 0, 9).astype(np.int8)
    return ["".join(str(int(v)) for v in row) for row in q]


class PlacementAid:
    def __init__(self) -> None:
        self.motion = np.zeros((GRID_H, GRID_W), np.float32)
        self.passages = np.zeros((GRID_H, GRID_W), np.float32)
        self.frames = 0

    def add_motion(self, grid: np.ndarray | None) -> None:
        self.frames += 1
        if grid is not None:
            self.motion += grid

    def add_passage(self, where: np.ndarray) -> None:
        total = float(where.sum())
        if total > 0:
            self.passages += where / total

    def answer(self, state: str, edge_grid: np.ndarray | None) -> dict:
        """The `zone_map` command's result (a few kB of digits, never an image)."""
        edges: list[str] | None = None
        note = None
        if edge_grid is not None and state in EMPTY_STATES:
            edges = _digits(edge_grid)
        else:
            note = "edges are only given while the room is empty"
        out = {
            "grid": [GRID_W, GRID_H],
            "origin": "top-left; x right, y down; cell (i, j) covers [i/W, (i+1)/W] × [j/H, (j+1)/H]",
            "frames": self.frames,
            "motion": _digits(self.motion),
            "passages": _digits(self.passages),
            "edges": edges,
        }
        if note:
            out["note"] = note
        return out
