"""Per-frame analysis, pure: a grayscale frame in, numbers out (never an image).

`Detector` is the interface an algorithm implements so it can be swapped and
benchmarked against another on the same frames. `MotionDetector` is the
default: frame difference plus an adaptive background, with a global change
(lamp switched, day/IR switch) compensated instead of counted as motion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

Box = tuple[float, float, float, float]  # x, y, w, h, normalised 0..1


@dataclass(frozen=True, slots=True)
class Observation:
    t: float
    motion: float  # share of pixels that changed since the previous frame
    foreground: float  # share of pixels that differ from the background
    box: Box | None  # bounding box of the moving pixels
    brightness: float  # mean luma 0..255
    global_change: bool  # the whole image changed at once (lighting, not a person)


class Detector(Protocol):
    def process(self, image: np.ndarray, t: float) -> Observation: ...


@dataclass(frozen=True)
class MotionParams:
    diff_threshold: int = 18  # luma difference that counts as change
    bg_rate: float = 0.02  # background learning rate per frame
    global_share: float = 0.6  # this share changed at once = lighting, not motion


class MotionDetector:
    def __init__(self, params: MotionParams | None = None) -> None:
        self.p = params or MotionParams()
        self._prev: np.ndarray | None = None
        self._bg: np.ndarray | None = None
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    def process(self, image: np.ndarray, t: float) -> Observation:
        small = cv2.GaussianBlur(image, (5, 5), 0)
        brightness = float(small.mean())
        if self._prev is None or self._prev.shape != small.shape:
            self._prev = small
            self._bg = small.astype(np.float32)
            return Observation(t, 0.0, 0.0, None, brightness, False)
        diff = cv2.absdiff(small, self._prev)
        # Remove a uniform shift first: a lamp turned on is not a person moving.
        shift = float(np.median(diff))
        mask = diff > (self.p.diff_threshold + shift)
        share = float(mask.mean())
        global_change = share > self.p.global_share
        if global_change:
            self._bg = small.astype(np.float32)
            self._prev = small
            return Observation(t, 0.0, 0.0, None, brightness, True)
        mask_u8 = cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_OPEN, self._kernel)
        motion = float(np.count_nonzero(mask_u8)) / mask_u8.size
        box = _bbox(mask_u8)
        assert self._bg is not None
        fg = cv2.absdiff(small, self._bg.astype(np.uint8)) > self.p.diff_threshold
        cv2.accumulateWeighted(small, self._bg, self.p.bg_rate)
        self._prev = small
        return Observation(t, motion, float(fg.mean()), box, brightness, False)


def _bbox(mask: np.ndarray) -> Box | None:
    pts = cv2.findNonZero(mask)
    if pts is None or len(pts) < 4:
        return None
    x, y, w, h = cv2.boundingRect(pts)
    H, W = mask.shape
    return (x / W, y / H, w / W, h / H)
