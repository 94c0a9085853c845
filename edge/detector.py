"""Per-frame analysis, pure: a grayscale frame in, numbers out (never an image).

`Detector` is the interface an algorithm implements so it can be swapped and
benchmarked against another on the same frames. `MotionDetector` is the default:

- frame difference against the previous frame (what moves now), with a short
  decaying motion-energy image (where something moved in the last second);
- an adaptive background (running average, learned only where nothing moved
  recently, so a person who stops is not absorbed within seconds);
- a global change (lamp switched, day/IR switch, auto exposure jump) is detected
  and absorbed instead of counted as motion;
- a coarse structure signature of the background (edges on a 32×24 grid),
  computed about once a second, for camera moved / covered checks.

Everything it returns is small: shares, a box, and coarse grids of cells. Frames
stay inside `process` and are dropped when it returns.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from .zones import GRID_H, GRID_W

Box = tuple[float, float, float, float]  # x, y, w, h, normalised 0..1


@dataclass(frozen=True, slots=True)
class Observation:
    t: float
    motion: float  # share of (non-ignored) pixels that changed since the previous frame
    box: Box | None  # extent of the moving pixels (robust: 3rd..97th percentile), normalised
    motion_grid: np.ndarray | None  # GRID_H×GRID_W share of moving pixels per cell; None: none
    fg_grid: np.ndarray  # GRID_H×GRID_W share of pixels that differ from the background
    brightness: float  # mean luma 0..255
    contrast: float  # luma standard deviation
    global_change: bool  # the whole image changed at once (lighting, not a person)
    structure: float = math.nan  # similarity of the background's edges to the reference, 0..1
    foreground: float = 0.0  # share of pixels that differ from the background


class Detector(Protocol):
    def process(self, image: np.ndarray, t: float) -> Observation: ...


@dataclass(frozen=True)
class MotionParams:
    width: int = 160  # analysis width; larger frames are downscaled (aspect kept)
    diff_lag_s: float = 0.2  # motion is the change over this time (the same at any frame rate)
    diff_threshold: int = 12  # luma difference that counts as change between frames
    fg_threshold: int = 18  # luma difference that counts as foreground against the background
    bg_tau_s: float = 20.0  # background time constant where nothing moved recently
    energy_s: float = 1.5  # motion keeps the background from learning this long
    global_share: float = 0.45  # this share changed at once = lighting, not motion
    global_luma: float = 22.0  # or the mean luma jumped this much between two frames
    global_spread: float = 0.7  # or changes spread over this share of the grid cells ...
    global_spread_min_share: float = 0.1  # ... while at least this share of pixels changed
    min_pixels: int = 12  # fewer moving pixels than this is noise, not motion
    noise_k: float = 6.0  # the threshold stays this many times the mean noise difference
    noise_tau_s: float = 10.0  # the noise level is followed this fast (in quiet frames)
    noise_every_s: float = 1.0  # how often the noise level is measured
    structure_every_s: float = 1.0  # how often the structure signature is computed
    structure_tau_s: float = 120.0  # how fast the reference structure follows slow changes
    light_ncc: float = 0.5  # a changed cell whose pattern still correlates this much: light
    texture_min_var: float = 9.0  # cells with less luma variance than this have no pattern


class MotionDetector:
    """Frame difference + selective running-average background, on a coarse grid."""

    def __init__(self, params: MotionParams | None = None, keep: np.ndarray | None = None) -> None:
        """`keep`: uint8 0/1 mask at analysis size of pixels outside ignore zones (None: all)."""
        self.p = params or MotionParams()
        self._keep = keep
        self._prev: np.ndarray | None = None
        self._prev_t = 0.0
        self._ring: deque[tuple[float, np.ndarray]] = deque()
        self._cell_kernel = np.ones((3, 3), np.uint8)
        self._bg: np.ndarray | None = None
        self._energy: np.ndarray | None = None
        self._ref_structure: np.ndarray | None = None
        self._next_structure = 0.0
        self._structure = math.nan
        self._keep_count = 0
        self._noise = 0.0  # typical frame difference from camera noise alone
        self._next_noise = 0.0
        self._noise_measured = False
        # The current frame and the background it was compared with, for `object_grid`
        # (asked for only at candidate moments); replaced by the next frame.
        self._cur: np.ndarray | None = None
        self._cur_bg: np.ndarray | None = None
        self._cur_fg: np.ndarray | None = None

    def set_keep_mask(self, keep: np.ndarray | None) -> None:
        self._keep = keep
        self._prev = None  # re-initialise on the next frame

    def reset(self) -> None:
        self._prev = None
        self._ref_structure = None

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        h, w = image.shape[:2]
        if w != self.p.width:
            height = max(1, round(h * self.p.width / w))
            image = cv2.resize(image, (self.p.width, height), interpolation=cv2.INTER_AREA)
        return cv2.blur(image, (3, 3))

    def _init(self, g: np.ndarray, t: float) -> Observation:
        self._prev = g
        self._prev_t = t
        self._ring.clear()
        self._ring.append((t, g))
        self._bg = g.astype(np.float32)
        self._energy = np.zeros_like(g)
        h, w = g.shape
        if self._keep is not None:
            keep = self._keep
            if keep.shape != (h, w):
                keep = cv2.resize(keep, (w, h), interpolation=cv2.INTER_NEAREST)
            self._keep = np.where(keep > 0, 255, 0).astype(np.uint8)
        self._keep_count = int(cv2.countNonZero(self._keep)) if self._keep is not None else h * w
        mean, std = cv2.meanStdDev(g)
        return Observation(
            t,
            0.0,
            None,
            None,
            np.zeros((GRID_H, GRID_W), np.float32),
            float(mean[0, 0]),
            float(std[0, 0]),
            False,
        )

    def process(self, image: np.ndarray, t: float) -> Observation:
        g = self._prepare(image)
        if self._prev is None or self._prev.shape != g.shape:
            return self._init(g, t)
        p = self.p
        dt = max(1e-3, t - self._prev_t)
        mean, std = cv2.meanStdDev(g)
        brightness, contrast = float(mean[0, 0]), float(std[0, 0])
        # The reference is the newest frame at least `diff_lag_s` old.
        ring = self._ring
        while len(ring) > 1 and ring[1][0] <= t - p.diff_lag_s + 1e-3:
            ring.popleft()
        ref = ring[0][1]
        diff = cv2.absdiff(g, ref)
        if t >= self._next_noise:
            # Camera noise: the typical difference in the quieter cells (a person fills
            # only some of them), followed slowly.
            self._next_noise = t + p.noise_every_s
            cells = cv2.resize(diff, (GRID_W, GRID_H), interpolation=cv2.INTER_AREA).ravel()
            k = cells.size // 5
            level = float(np.partition(cells, k)[k])
            if self._noise_measured:
                self._noise += (1.0 - math.exp(-p.noise_every_s / p.noise_tau_s)) * (
                    level - self._noise
                )
            else:
                self._noise, self._noise_measured = level, True
        # The threshold rises above the camera's own noise (a grainy IR image at night).
        threshold = max(p.diff_threshold, p.noise_k * self._noise)
        _, mask = cv2.threshold(diff, threshold, 255, cv2.THRESH_BINARY)
        if self._keep is not None:
            mask = cv2.bitwise_and(mask, self._keep)
        moving = cv2.countNonZero(mask)
        share = moving / max(1, self._keep_count)
        prev_mean = cv2.mean(ref)[0]
        self._prev, self._prev_t = g, t
        ring.append((t, g))
        motion_grid = None
        if moving >= p.min_pixels:
            motion_grid = cv2.resize(mask, (GRID_W, GRID_H), interpolation=cv2.INTER_AREA)
            motion_grid = motion_grid.astype(np.float32) * (1 / 255)
        # A person is one compact region; a lamp or the day/IR switch changes cells all
        # over the image at once, even where each change is small.
        spread = (
            float(np.count_nonzero(motion_grid > 0.02)) / motion_grid.size
            if motion_grid is not None and share > p.global_spread_min_share
            else 0.0
        )
        if (
            share > p.global_share
            or abs(brightness - prev_mean) > p.global_luma
            or spread > p.global_spread
        ):
            # Lighting, not a person: start the background again from this frame.
            assert self._energy is not None
            self._cur = self._cur_bg = self._cur_fg = None
            self._bg = g.astype(np.float32)
            self._energy[:] = 0
            ring.clear()
            ring.append((t, g))
            return Observation(
                t,
                0.0,
                None,
                None,
                np.zeros((GRID_H, GRID_W), np.float32),
                brightness,
                contrast,
                True,
                self._structure,
            )
        box: Box | None = None
        if motion_grid is not None:
            box = self._main_extent(mask, motion_grid)
        else:
            share = 0.0
        # Motion energy: where something moved within the last `energy_s` seconds.
        assert self._energy is not None and self._bg is not None
        decay = 255.0 * dt / p.energy_s
        cv2.subtract(self._energy, (decay,), dst=self._energy)
        cv2.max(self._energy, mask, dst=self._energy)
        # Foreground against the background, then learn the background where quiet.
        bg8 = cv2.convertScaleAbs(self._bg)
        fg = cv2.absdiff(g, bg8)
        # (one frame against a smooth background: about 0.7× the noise of a difference)
        fg_threshold = max(p.fg_threshold, 0.7 * p.noise_k * self._noise)
        _, fg = cv2.threshold(fg, fg_threshold, 255, cv2.THRESH_BINARY)
        if self._keep is not None:
            fg = cv2.bitwise_and(fg, self._keep)
        fg_grid = cv2.resize(fg, (GRID_W, GRID_H), interpolation=cv2.INTER_AREA)
        fg_grid = fg_grid.astype(np.float32) * (1 / 255)
        self._cur, self._cur_bg, self._cur_fg = g, bg8, fg_grid
        quiet = cv2.compare(self._energy, 0, cv2.CMP_EQ)
        alpha = 1.0 - math.exp(-dt / p.bg_tau_s)
        cv2.accumulateWeighted(g, self._bg, alpha, quiet)
        if t >= self._next_structure:
            self._next_structure = t + p.structure_every_s
            self._structure = self._structure_similarity(bg8, dt=p.structure_every_s)
        return Observation(
            t,
            share,
            box,
            motion_grid,
            fg_grid,
            brightness,
            contrast,
            False,
            self._structure,
            cv2.countNonZero(fg) / fg.size,
        )

    def _structure_similarity(self, bg8: np.ndarray, dt: float) -> float:
        """Normalised correlation of the background's coarse edge map with the reference."""
        gx = cv2.Sobel(bg8, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(bg8, cv2.CV_32F, 0, 1, ksize=3)
        mag = cv2.magnitude(gx, gy)
        sig = cv2.resize(mag, (GRID_W, GRID_H), interpolation=cv2.INTER_AREA).ravel()
        sig = sig - sig.mean()
        n = float(np.linalg.norm(sig))
        if n < 1e-3:
            return 0.0  # no structure at all (covered or black)
        sig /= n
        if self._ref_structure is None:
            self._ref_structure = sig
            return 1.0
        sim = float(np.dot(sig, self._ref_structure))
        if sim > 0.8:  # follow slow changes (furniture, daylight), not a moved camera
            a = 1.0 - math.exp(-dt / self.p.structure_tau_s)
            ref = (1 - a) * self._ref_structure + a * sig
            self._ref_structure = ref / max(1e-6, float(np.linalg.norm(ref)))
        return max(0.0, sim)

    def _main_extent(self, mask: np.ndarray, grid: np.ndarray) -> Box | None:
        """Extent of the main moving blob: a curtain or a door swinging elsewhere in the
        room does not stretch the person's box. Blobs closer than two cells are one."""
        cells = cv2.compare(grid, 0.04, cv2.CMP_GT)
        joined = cv2.dilate(cells, self._cell_kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
        if n <= 2:
            return _extent(mask)
        mass = np.bincount(labels.ravel(), weights=grid.ravel(), minlength=n)
        k = int(np.argmax(mass[1:])) + 1
        cx, cy, cw, ch = (int(v) for v in stats[k][:4])
        H, W = mask.shape
        x0, x1 = cx * W // GRID_W, (cx + cw) * W // GRID_W
        y0, y1 = cy * H // GRID_H, (cy + ch) * H // GRID_H
        sub = _extent(np.ascontiguousarray(mask[y0:y1, x0:x1]))
        if sub is None:
            return _extent(mask)
        sx, sy, sw, sh = sub
        bw, bh = (x1 - x0) / W, (y1 - y0) / H
        return (x0 / W + sx * bw, y0 / H + sy * bh, sw * bw, sh * bh)

    def object_grid(self) -> np.ndarray | None:
        """The foreground of the last frame without what light alone explains.

        Per grid cell, the share of pixels that differ from the background (as
        `fg_grid`), kept only where the cell's pattern changed: a shadow that moved or a
        patch of floor lit by a lamp keeps the texture of the floor (the frame and the
        background correlate in the cell, only brighter or darker), a body replaces it.
        Cells too plain to tell (no texture in either) are kept. Computed on request,
        at candidate moments only (a drop coming to rest, someone lying low), from the
        frame just analysed; None when there is none.
        """
        g, bg, fg = self._cur, self._cur_bg, self._cur_fg
        if g is None or bg is None or fg is None:
            return None
        size = (GRID_W, GRID_H)
        a = g.astype(np.float32)
        b = bg.astype(np.float32)
        ma = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        mb = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
        va = cv2.resize(a * a, size, interpolation=cv2.INTER_AREA) - ma * ma
        vb = cv2.resize(b * b, size, interpolation=cv2.INTER_AREA) - mb * mb
        cov = cv2.resize(a * b, size, interpolation=cv2.INTER_AREA) - ma * mb
        va = np.maximum(va, 0.0)
        vb = np.maximum(vb, 0.0)
        ncc = cov / np.sqrt(np.maximum(va * vb, 1e-6))
        plain = np.maximum(va, vb) < self.p.texture_min_var
        light = (ncc >= self.p.light_ncc) & ~plain
        return np.where(light, 0.0, fg).astype(np.float32)

    def edge_grid(self) -> np.ndarray | None:
        """Edge strength of the learned background on the coarse grid (placement aid)."""
        if self._bg is None:
            return None
        bg8 = cv2.convertScaleAbs(self._bg)
        gx = cv2.Sobel(bg8, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(bg8, cv2.CV_32F, 0, 1, ksize=3)
        mag = cv2.magnitude(gx, gy)
        return cv2.resize(mag, (GRID_W, GRID_H), interpolation=cv2.INTER_AREA)

    def rebase_structure(self) -> None:
        """Accept the current view as the reference (after a confirmed camera move)."""
        self._ref_structure = None


def _extent(mask: np.ndarray, lo: float = 0.03, hi: float = 0.97) -> Box | None:
    """Robust extent of the nonzero pixels: lo..hi percentiles of rows and columns."""
    rows = cv2.reduce(mask, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    cols = cv2.reduce(mask, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    total = float(rows.sum())
    if total <= 0:
        return None
    cr = np.cumsum(rows)
    cc = np.cumsum(cols)
    y0 = int(np.searchsorted(cr, lo * total))
    y1 = int(np.searchsorted(cr, hi * total))
    x0 = int(np.searchsorted(cc, lo * total))
    x1 = int(np.searchsorted(cc, hi * total))
    H, W = mask.shape
    return (x0 / W, y0 / H, (x1 + 1 - x0) / W, (y1 + 1 - y0) / H)
