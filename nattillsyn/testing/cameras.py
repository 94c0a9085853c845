"""Synthetic cameras for tests and benchmarks: frame sources an `EdgeAgent` takes."""

from __future__ import annotations

import threading
from functools import partial

import numpy as np

from nattillsyn.edge.sources import Frame


class SweepingBar:
    """A bright bar sweeping across a dark room at `fps`, at the camera's own pace."""

    def __init__(
        self,
        *,
        fps: float = 5.0,
        size: tuple[int, int] = (90, 160),
        rows: tuple[int, int] = (20, 80),
        width: int = 10,
        step: int = 9,
        level: int = 255,
    ) -> None:
        self.fps, self.size, self.rows = fps, size, rows
        self.width, self.step, self.level = width, step, level
        self._closed = threading.Event()

    def frames(self):
        i = 0
        span = self.size[1] - self.width
        while not self._closed.is_set():
            img = np.zeros(self.size, np.uint8)
            x = (i * self.step) % span
            img[self.rows[0] : self.rows[1], x : x + self.width] = self.level
            yield Frame(i / self.fps, img)
            i += 1
            self._closed.wait(1 / self.fps)

    def close(self) -> None:
        self._closed.set()


# A quiet room at 2 frames/s: only a small patch moves (what the admin-push benchmark needs).
still_room = partial(SweepingBar, fps=2.0, size=(60, 80), rows=(10, 20), width=8, step=5, level=200)
