"""The edge agent's analysis thread: frames in, small outputs out.

Frames never leave this thread: it runs the complete analysis (`pipeline.Analysis`) and
hands only its outputs to the asyncio loop. A new configuration and zone-map requests are
picked up between two frames.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from prometheus_client import Counter

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.protocol import DeviceConfig, RoomStateName

from .pipeline import Analysis
from .room import Output, StateChange
from .sources import FrameSource

logger = log.get(__name__)

FRAMES = Counter("nattillsyn_edge_frames_total", "Frames analysed.", ["device"])

# Called on the asyncio loop with (source time, clock.monotonic() when seen, outputs).
Deliver = Callable[[float, float, list[Output]], None]


class AnalysisWorker:
    """One analysis thread at a time, over one frame source."""

    def __init__(
        self, device: str, new_analysis: Callable[[], Analysis], clock: Clock = SYSTEM
    ) -> None:
        self.device = device
        self._new_analysis = new_analysis
        self._clock = clock
        self.analysis: Analysis | None = None
        self.thread: threading.Thread | None = None
        self.frames = 0
        self.fps = 0.0
        self.retry_s = 2.0  # the pause before reopening a failed camera; 2 s while frames flow
        self._source: FrameSource | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending_config: DeviceConfig | None = None
        self._zone_map_requests: list[asyncio.Future[dict]] = []

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(
        self,
        source: FrameSource,
        analysis: Analysis,
        deliver: Deliver,
        failed: Callable[[], None],
    ) -> None:
        """Run `analysis` over `source`; `failed` is called on the loop if the camera fails."""
        with self._lock:
            self._pending_config = None
        self._source = source
        self.analysis = analysis
        self._stop.clear()
        self.thread = threading.Thread(
            target=self._run,
            args=(asyncio.get_running_loop(), source, analysis, deliver, failed),
            name="edge-analysis",
            daemon=True,
        )
        self.thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._source is not None:
            self._source.close()
            self._source = None
        if self.thread is not None:
            await asyncio.to_thread(self.thread.join, 15)
            self.thread = None
        self.analysis = None
        with self._lock:
            requests, self._zone_map_requests = self._zone_map_requests, []
        for fut in requests:
            if not fut.done():
                fut.set_exception(RuntimeError("analysis stopped"))

    def apply(self, config: DeviceConfig) -> None:
        """Hand a new configuration to the analysis, between two frames."""
        with self._lock:
            self._pending_config = config

    async def zone_map(self) -> dict:
        fut: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._zone_map_requests.append(fut)
        return await asyncio.wait_for(fut, 10)

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        source: FrameSource,
        analysis: Analysis,
        deliver: Deliver,
        failed: Callable[[], None],
    ) -> None:
        window_start, window_frames = self._clock.monotonic(), 0
        frames = FRAMES.labels(self.device)
        clip: str | None = None
        try:
            for frame in source.frames():
                if self._stop.is_set():
                    break
                outputs: list[Output] = []
                if frame.clip != clip:
                    if clip is not None:
                        # A replayed playlist moves to the next clip: a new view, not a
                        # moved camera. Close what was open and start afresh.
                        outputs += analysis.finish(frame.t)
                        analysis = self._new_analysis()
                        self.analysis = analysis
                    clip = frame.clip
                with self._lock:
                    config, self._pending_config = self._pending_config, None
                    requests, self._zone_map_requests = self._zone_map_requests, []
                if config is not None:
                    outputs += analysis.apply(config)
                outputs += analysis.process(frame.image, frame.t)
                t = frame.t
                del frame  # the image goes no further than this thread
                for fut in requests:
                    answer = analysis.zone_map()
                    loop.call_soon_threadsafe(_resolve, fut, answer)
                frames.inc()
                self.retry_s = 2.0  # frames flow again
                window_frames += 1
                now = self._clock.monotonic()
                if now - window_start >= 5:
                    self.fps = window_frames / (now - window_start)
                    window_start, window_frames = now, 0
                self.frames += 1
                if outputs:
                    loop.call_soon_threadsafe(deliver, t, now, outputs)
        except Exception as exc:
            logger.error("camera failed", device=self.device, error=str(exc)[:300])
            if not self._stop.is_set():
                outputs = analysis.finish(self._clock.monotonic())
                outputs.append(StateChange(RoomStateName.unknown, analysis.model.last_t, 0.0))
                loop.call_soon_threadsafe(
                    deliver, analysis.model.last_t, self._clock.monotonic(), outputs
                )
                loop.call_soon_threadsafe(failed)
        finally:
            source.close()


def _resolve(fut: asyncio.Future, value: object) -> None:
    if not fut.done():
        fut.set_result(value)
