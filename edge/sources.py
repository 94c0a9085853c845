"""Frame sources: camera, RTSP, video file, or a playlist of clips replayed.

Every source yields `Frame`s: small grayscale images with a source time in
seconds. Frames live only in memory; nothing here writes or encodes an image.
Frames the analysis does not need are skipped with `grab()` (no decode) where
the backend allows, so decode cost stays out of the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    t: float  # seconds since the source started (source clock)
    image: np.ndarray  # uint8 grayscale, analysis size
    clip: str | None = None  # name of the clip being replayed, if any


class FrameSource(Protocol):
    """Anything that yields frames; `close()` releases the device."""

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def to_analysis(image: np.ndarray, width: int) -> np.ndarray:
    """Grayscale, downscaled to `width` (aspect kept), as the analysis wants it."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = image.shape[:2]
    if w != width:
        height = max(1, round(h * width / w))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return image


def _open(spec: str | Path) -> cv2.VideoCapture:
    s = str(spec)
    cap = cv2.VideoCapture(int(s)) if s.isdigit() else cv2.VideoCapture(s)
    if not cap.isOpened():
        raise OSError(f"cannot open frame source {s!r}")
    return cap


def _read_file(path: Path, fps: float, width: int) -> Iterator[tuple[float, np.ndarray]]:
    """Frames of one file at about `fps`, with their time in the file."""
    cap = _open(path)
    try:
        native = cap.get(cv2.CAP_PROP_FPS) or fps
        step = 1.0 / fps
        next_t = 0.0
        index = 0
        while True:
            t = index / native
            index += 1
            if t + 1e-6 < next_t:
                if not cap.grab():  # skipped frame: demux only, no decode
                    return
                continue
            ok, image = cap.read()
            if not ok:
                return
            next_t += step
            yield t, to_analysis(image, width)
    finally:
        cap.release()


class Pacer:
    """Sleeps so that source time runs at `speed` × wall time (0: as fast as possible)."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._t0: float | None = None

    def wait(self, t: float) -> None:
        if self.speed <= 0:
            return
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now - t / self.speed
        delay = self._t0 + t / self.speed - now
        if delay > 0:
            time.sleep(delay)


class PlaylistSource:
    """Video files replayed in order (optionally forever), as if from one camera.

    `hold_last_s` keeps yielding each file's last frame for that long after it
    ends, as the scoring rules do: a person who fell stays down.
    """

    def __init__(
        self,
        files: Sequence[Path],
        *,
        fps: float = 5.0,
        width: int = 160,
        replay_speed: float = 1.0,
        loop: bool = False,
        hold_last_s: float = 0.0,
    ) -> None:
        if not files:
            raise ValueError("empty playlist")
        self.files = [Path(f) for f in files]
        self.fps = fps
        self.width = width
        self.loop = loop
        self.hold_last_s = hold_last_s
        self._pacer = Pacer(replay_speed)
        self._closed = False

    def frames(self) -> Iterator[Frame]:
        offset = 0.0
        step = 1.0 / self.fps
        while not self._closed:
            for path in self.files:
                last: np.ndarray | None = None
                t_end = 0.0
                for t, image in _read_file(path, self.fps, self.width):
                    if self._closed:
                        return
                    self._pacer.wait(offset + t)
                    yield Frame(offset + t, image, path.name)
                    last, t_end = image, t
                if last is None:
                    continue
                held = step
                while held <= self.hold_last_s and not self._closed:
                    self._pacer.wait(offset + t_end + held)
                    yield Frame(offset + t_end + held, last, path.name)
                    held += step
                offset += t_end + held
            if not self.loop:
                return

    def close(self) -> None:
        self._closed = True


class CaptureSource:
    """A live camera (index or /dev/videoN) or an RTSP/HTTP stream, at about `fps`."""

    def __init__(self, spec: str, *, fps: float = 5.0, width: int = 160) -> None:
        self.spec = spec
        self.fps = fps
        self.width = width
        self._cap: cv2.VideoCapture | None = None
        self._closed = False

    def frames(self) -> Iterator[Frame]:
        self._cap = _open(self.spec)
        # Ask the driver for a small stream: less to decode on a Pi.
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, 320)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, 240)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        t0 = time.monotonic()
        step = 1.0 / self.fps
        next_t = 0.0
        while not self._closed:
            if not self._cap.grab():
                raise OSError(f"frame source {self.spec!r} stopped delivering frames")
            t = time.monotonic() - t0
            if t + 1e-3 < next_t:
                continue  # drop without decoding
            ok, image = self._cap.retrieve()
            if not ok:
                continue
            next_t = max(next_t + step, t)
            yield Frame(t, to_analysis(image, self.width))

    def close(self) -> None:
        self._closed = True
        if self._cap is not None:
            self._cap.release()


def open_source(
    spec: str,
    *,
    fps: float,
    width: int,
    replay_speed: float = 1.0,
    loop: bool = False,
    hold_last_s: float = 0.0,
) -> FrameSource:
    """A source from the settings' string: directory, file, camera index/device or URL."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".mp4", ".avi", ".mkv"})
        return PlaylistSource(
            files,
            fps=fps,
            width=width,
            replay_speed=replay_speed,
            loop=loop,
            hold_last_s=hold_last_s,
        )
    if path.is_file():
        return PlaylistSource(
            [path],
            fps=fps,
            width=width,
            replay_speed=replay_speed,
            loop=loop,
            hold_last_s=hold_last_s,
        )
    return CaptureSource(spec, fps=fps, width=width)
