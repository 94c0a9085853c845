"""Zones of a room, rasterised once for the analysis (pure).

Zones come from the room configuration (`DeviceConfig.zones`) as polygons in
normalised image coordinates (0..1, origin top left). The analysis works on a
coarse grid of cells (default 32×24); each zone becomes a weight per cell (the
share of the cell the polygon covers), so per-zone sums are one small dot product.
`ignore` zones also become a pixel mask at analysis resolution: motion there is
dropped before anything else sees it (a TV, a window with traffic, a curtain).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from nattillsyn.protocol import Zone, ZoneKind

GRID_W, GRID_H = 32, 24
_RASTER = 8  # sub-cell resolution used to rasterise polygons


def _coverage(polygons: list[list[tuple[float, float]]], w: int, h: int) -> np.ndarray:
    """Share of each of w×h cells covered by the union of `polygons` (float32 0..1)."""
    W, H = w * _RASTER, h * _RASTER
    canvas = np.zeros((H, W), np.uint8)
    for poly in polygons:
        pts = np.array([[round(x * W), round(y * H)] for x, y in poly], np.int32)
        cv2.fillPoly(canvas, [pts], (255,))
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


@dataclass(frozen=True)
class ZoneGrid:
    """A zone rasterised on the analysis grid."""

    name: str
    kind: ZoneKind
    weight: np.ndarray  # GRID_H × GRID_W, 0..1
    polygon: tuple[tuple[float, float], ...] = ()
    border: frozenset[str] = frozenset()  # image edges the zone touches: left/right/top/bottom


@dataclass
class RoomZones:
    """All zones of a room, ready for the analysis."""

    zones: list[ZoneGrid] = field(default_factory=list)
    grid: tuple[int, int] = (GRID_W, GRID_H)

    @classmethod
    def from_config(cls, zones: list[Zone], grid: tuple[int, int] = (GRID_W, GRID_H)) -> RoomZones:
        out = []
        for z in zones:
            poly = [(min(1.0, max(0.0, x)), min(1.0, max(0.0, y))) for x, y in z.polygon]
            border = set()
            eps = 0.02
            if any(x <= eps for x, _ in poly):
                border.add("left")
            if any(x >= 1 - eps for x, _ in poly):
                border.add("right")
            if any(y <= eps for _, y in poly):
                border.add("top")
            if any(y >= 1 - eps for _, y in poly):
                border.add("bottom")
            out.append(
                ZoneGrid(z.name, z.kind, _coverage([poly], *grid), tuple(poly), frozenset(border))
            )
        return cls(out, grid)

    def of(self, *kinds: ZoneKind) -> list[ZoneGrid]:
        return [z for z in self.zones if z.kind in kinds]

    def has(self, kind: ZoneKind) -> bool:
        return any(z.kind is kind for z in self.zones)

    def weight(self, *kinds: ZoneKind) -> np.ndarray | None:
        """Union of the zones of these kinds (cell weights, 0..1), None if there are none."""
        zs = self.of(*kinds)
        if not zs:
            return None
        w = zs[0].weight.copy()
        for z in zs[1:]:
            np.maximum(w, z.weight, out=w)
        return w

    def ignore_mask(self, width: int, height: int) -> np.ndarray | None:
        """Pixel mask (uint8 0/1) of everything *outside* ignore zones, or None if none."""
        polys = [z for z in self.zones if z.kind is ZoneKind.ignore]
        if not polys:
            return None
        canvas = np.full((height, width), 1, np.uint8)
        for z in polys:
            pts = np.array([[round(x * width), round(y * height)] for x, y in z.polygon], np.int32)
            cv2.fillPoly(canvas, [pts], (0,))
        return canvas


def share_in(grid: np.ndarray, weight: np.ndarray | None) -> float:
    """Share of the mass of `grid` that lies in the zone `weight` (0 if no mass or no zone)."""
    if weight is None:
        return 0.0
    total = float(grid.sum())
    if total <= 1e-9:
        return 0.0
    return float((grid * weight).sum()) / total


def default_border_door(grid: tuple[int, int] = (GRID_W, GRID_H), depth: int = 2) -> np.ndarray:
    """Without any door zone, the image border acts as the way out of view."""
    w, h = grid
    m = np.zeros((h, w), np.float32)
    m[:depth, :] = 1
    m[-depth:, :] = 1
    m[:, :depth] = 1
    m[:, -depth:] = 1
    return m
