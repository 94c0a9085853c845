"""Frame sources: camera (V4L2/USB), RTSP/HTTP stream, video file, or a directory of clips.

Every source yields `Frame`s: small grayscale images with a source time in
seconds. Frames live only in memory; nothing here writes or encodes an image.

Decoding stays out of the analysis thread: a reader thread pulls the stream
(`grab()` on every frame, so an RTSP buffer never lags), decodes and downscales
only the frames the analysis will use (`retrieve()` at the configured rate) and
hands them over through a small bounded queue. Cameras are asked for a small
stream at a low rate so there is little to decode on a Pi.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm"})


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


class ClipReader:
    """Frames of one video file at about `fps`, with their time in the file.

    Frames between the ones kept are only grabbed (demuxed, no colour conversion
    or scaling). After iterating, `native_fps` and `native_frames` describe the file.
    """

    def __init__(self, path: Path, fps: float, width: int) -> None:
        self.path = Path(path)
        self.fps = fps
        self.width = width
        self.native_fps = 0.0
        self.native_frames = 0

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        cap = _open(self.path)
        try:
            native = cap.get(cv2.CAP_PROP_FPS) or self.fps
            self.native_fps = native
            step = 1.0 / self.fps
            next_t = 0.0
            index = 0
            while True:
                t = index / native
                if t + 1e-6 < next_t:
                    if not cap.grab():  # skipped frame: no conversion, no scaling
                        return
                    index += 1
                    self.native_frames = index
                    continue
                ok, image = cap.read()
                if not ok:
                    return
                index += 1
                self.native_frames = index
                next_t += step
                while next_t <= t:
                    next_t += step
                yield t, to_analysis(image, self.width)
        finally:
            cap.release()


class Pacer:
    """Sleeps so that source time runs at `speed` × wall time (0: as fast as possible)."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._t0: float | None = None
        self._stop = threading.Event()

    def wait(self, t: float) -> None:
        if self.speed <= 0:
            return
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now - t / self.speed
        delay = self._t0 + t / self.speed - now
        if delay > 0:
            self._stop.wait(delay)

    def cancel(self) -> None:
        self._stop.set()


_END = object()


class _Prefetch:
    """Runs a frame generator in a reader thread; the consumer gets frames from a small queue."""

    def __init__(
        self, gen: Iterator[Frame], depth: int = 2, name: str = "edge-reader", latest: bool = False
    ) -> None:
        """`latest`: never wait for the consumer, replace the oldest waiting frame instead."""
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._latest = latest
        self._closed = threading.Event()
        self._gen = gen
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._gen:
                if self._latest:
                    while True:
                        try:
                            self._q.put_nowait(item)
                            break
                        except queue.Full:
                            with contextlib.suppress(queue.Empty):
                                self._q.get_nowait()
                    continue
                self._put(item)
                if self._closed.is_set():
                    return
            self._put(_END)
        except Exception as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            with contextlib.suppress(Exception):
                self._gen.close()  # type: ignore[attr-defined]

    def _put(self, item: object) -> None:
        """Wait for room in the queue, or until the source is closed."""
        while not self._closed.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                item = self._q.get(timeout=0.2)
            except queue.Empty:
                if self._closed.is_set():
                    return
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._closed.set()


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
        self._closed = threading.Event()
        self._reader: _Prefetch | None = None

    def _decode(self) -> Iterator[Frame]:
        offset = 0.0
        step = 1.0 / self.fps
        while not self._closed.is_set():
            for path in self.files:
                last: np.ndarray | None = None
                t_end = 0.0
                for t, image in ClipReader(path, self.fps, self.width).frames():
                    if self._closed.is_set():
                        return
                    yield Frame(offset + t, image, path.name)
                    last, t_end = image, t
                if last is None:
                    continue
                held = step
                while held <= self.hold_last_s + 1e-9 and not self._closed.is_set():
                    yield Frame(offset + t_end + held, last, path.name)
                    held += step
                offset += t_end + held
            if not self.loop:
                return

    def frames(self) -> Iterator[Frame]:
        self._reader = _Prefetch(self._decode())
        try:
            for frame in self._reader:
                if self._closed.is_set():
                    return
                self._pacer.wait(frame.t)
                if self._closed.is_set():
                    return
                yield frame
        finally:
            self._reader.close()

    def close(self) -> None:
        self._closed.set()
        self._pacer.cancel()
        if self._reader is not None:
            self._reader.close()


class CaptureSource:
    """A live camera (index or /dev/videoN) or an RTSP/HTTP stream, at about `fps`.

    The reader thread grabs every frame the device delivers (so the stream never
    lags behind) and decodes, converts and downscales only one every 1/fps seconds.
    """

    def __init__(
        self,
        spec: str,
        *,
        fps: float = 5.0,
        width: int = 160,
        capture_size: tuple[int, int] = (320, 240),
    ) -> None:
        self.spec = spec
        self.fps = fps
        self.width = width
        self.capture_size = capture_size
        self._closed = threading.Event()
        self._reader: _Prefetch | None = None

    def _decode(self) -> Iterator[Frame]:
        cap = _open(self.spec)
        try:
            if not self.spec.lower().startswith(("rtsp:", "rtsps:", "http:", "https:")):
                # Ask the driver for a small, slow stream: less to decode on a Pi.
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.capture_size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.capture_size[1])
                cap.set(cv2.CAP_PROP_FPS, max(self.fps, 5.0))
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            t0 = time.monotonic()
            step = 1.0 / self.fps
            next_t = 0.0
            while not self._closed.is_set():
                if not cap.grab():
                    raise OSError(f"frame source {self.spec!r} stopped delivering frames")
                t = time.monotonic() - t0
                if t + 1e-3 < next_t:
                    continue  # dropped without decoding
                ok, image = cap.retrieve()
                if not ok:
                    continue
                next_t = max(next_t + step, t)
                yield Frame(t, to_analysis(image, self.width))
        finally:
            cap.release()

    def frames(self) -> Iterator[Frame]:
        # depth 1: the analysis always gets the newest frame, never a backlog
        self._reader = _Prefetch(self._decode(), depth=1, name="edge-capture", latest=True)
        try:
            yield from self._reader
        finally:
            self._reader.close()

    def close(self) -> None:
        self._closed.set()
        if self._reader is not None:
            self._reader.close()


def clip_files(folder: Path) -> list[Path]:
    """Video files of a folder, in name order."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


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
    kw = {
        "fps": fps,
        "width": width,
        "replay_speed": replay_speed,
        "loop": loop,
        "hold_last_s": hold_last_s,
    }
    if path.is_dir():
        files = clip_files(path)
        if not files:
            raise OSError(f"no video files in {path}")
        return PlaylistSource(files, **kw)
    if path.is_file() and not spec.startswith("/dev/"):
        return PlaylistSource([path], **kw)
    return CaptureSource(spec, fps=fps, width=width)
