"""The edge agent: frames in (in a worker thread), contract messages out.

Frames never leave the worker thread: it runs the detector and the room state
machine and hands only their small outputs to the asyncio loop, which turns
them into contract messages and publishes them with QoS 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from nattillsyn import __version__, log, metrics
from nattillsyn.ids import new_id
from nattillsyn.mqtt import MqttClient, Received, Will
from nattillsyn.protocol import (
    Availability,
    Command,
    CommandResponse,
    ConfigState,
    DeviceConfig,
    Event,
    EventPhase,
    Heartbeat,
    RoomState,
    RoomStateName,
    TopicKind,
    Topics,
    decode,
    encode,
)
from nattillsyn.settings import Settings

from .detector import MotionDetector
from .room import EventOut, Output, RoomModel, RoomParams, StateChange
from .sources import FrameSource, open_source

logger = log.get(__name__)


class EdgeAgent:
    name = "edge"

    def __init__(self, settings: Settings, source: Callable[[], FrameSource] | None = None) -> None:
        """`source` makes a frame source (again after a pause); default: from settings."""
        self.settings = settings
        self.cfg = settings.edge
        self.topics = Topics(settings.topic_root)
        self.site, self.room, self.device = settings.site, self.cfg.room, self.cfg.device
        self.session = time.time_ns() // 1_000_000
        self._seq = 0
        self._make_source = source or self._source_from_settings
        self._source: FrameSource | None = None
        self._started_at = time.monotonic()
        self.monitoring = True
        self.config_version = 0
        self.params = RoomParams(fall_confirm_s=self.cfg.fall_confirm_s)
        will = Availability(
            site=self.site,
            room=self.room,
            device=self.device,
            session=self.session,
            seq=0,
            state="offline",
        )
        self.mqtt = MqttClient(
            settings.mqtt_url,
            f"edge-{self.site}-{self.device}-{self.session}",
            will=Will(self._topic(TopicKind.availability), encode(will)),
        )
        self._outputs: asyncio.Queue[tuple[float, float, list[Output]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._thread: threading.Thread | None = None
        self._stop_analysis = threading.Event()
        self._event_ids: dict[str, uuid.UUID] = {}
        self._state = StateChange(RoomStateName.unknown, 0.0, 0.0)
        self._state_since = datetime.now(UTC)
        self._frames = 0
        self._fps = 0.0
        self._speed = self.cfg.replay_speed
        self.published = 0

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._seq = 1  # 0 is the last will
        self.mqtt.on_connect(self._announce)
        await self.mqtt.start()
        await self.mqtt.subscribe(
            self._topic(TopicKind.config_set), self._topic(TopicKind.command), qos=1
        )
        metrics.serve(self.cfg.metrics_port)
        self._tasks = [
            asyncio.create_task(self._publish_outputs(), name="edge-publish"),
            asyncio.create_task(self._heartbeat(), name="edge-heartbeat"),
            asyncio.create_task(self._periodic_state(), name="edge-state"),
            asyncio.create_task(self._control(), name="edge-control"),
        ]
        await self._start_analysis()

    async def stop(self) -> None:
        self._stop_analysis.set()
        if self._source is not None:
            self._source.close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        # A clean stop says so: offline, retained (the will is only for crashes).
        with contextlib.suppress(Exception):
            await self._send(
                TopicKind.availability,
                Availability(**self._ids(), state="offline"),
                retain=True,
                timeout=5,
            )
        await self.mqtt.stop()

    # -- analysis (worker thread) ---------------------------------------------------

    async def _start_analysis(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, 10)  # a pause just asked it to stop
        self._source = self._make_source()
        self._stop_analysis.clear()
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._analyse, args=(loop, self._source), name="edge-analysis", daemon=True
        )
        self._thread.start()

    def _source_from_settings(self) -> FrameSource:
        return open_source(
            self.cfg.source,
            fps=self.cfg.fps,
            width=self.cfg.width,
            replay_speed=self.cfg.replay_speed,
            loop=self.cfg.loop,
            hold_last_s=self.cfg.hold_last_s,
        )

    def _analyse(self, loop: asyncio.AbstractEventLoop, source: FrameSource) -> None:
        detector = MotionDetector()
        model = RoomModel(self.params)
        window_start, window_frames = time.monotonic(), 0
        try:
            for frame in source.frames():
                if self._stop_analysis.is_set():
                    break
                outputs = model.update(detector.process(frame.image, frame.t))
                del frame  # the image goes no further than this thread
                window_frames += 1
                now = time.monotonic()
                if now - window_start >= 5:
                    self._fps = window_frames / (now - window_start)
                    window_start, window_frames = now, 0
                self._frames += 1
                if outputs:
                    loop.call_soon_threadsafe(
                        self._outputs.put_nowait, (model.last_t, time.monotonic(), outputs)
                    )
        except Exception:
            logger.exception("frame analysis stopped", device=self.device)
        finally:
            source.close()

    # -- publishing -------------------------------------------------------------------

    def _topic(self, kind: TopicKind) -> str:
        return self.topics.device(self.site, self.room, self.device, kind)

    def _ids(self) -> dict:
        seq, self._seq = self._seq, self._seq + 1
        return {
            "site": self.site,
            "room": self.room,
            "device": self.device,
            "session": self.session,
            "seq": seq,
        }

    async def _send(self, kind: TopicKind, msg, retain: bool = False, timeout=None) -> None:
        await self.mqtt.publish(
            self._topic(kind), encode(msg), qos=1, retain=retain, timeout=timeout
        )
        self.published += 1

    def _announce(self) -> None:
        msg = Availability(**self._ids(), state="online")
        self.mqtt.publish_nowait(self._topic(TopicKind.availability), encode(msg), retain=True)

    def _wall(self, t: float, t_now: float, mono: float) -> datetime:
        """Source time `t` as wall time, given that `t_now` was seen at monotonic `mono`."""
        ago = (t_now - t) / self._speed if self._speed > 0 else 0.0
        ago += time.monotonic() - mono
        return datetime.now(UTC) - timedelta(seconds=max(0.0, ago))

    async def _publish_outputs(self) -> None:
        while True:
            t_now, mono, outputs = await self._outputs.get()
            for out in outputs:
                if isinstance(out, StateChange):
                    self._state = out
                    self._state_since = self._wall(out.since, t_now, mono)
                    await self._publish_state()
                elif isinstance(out, EventOut):
                    await self._publish_event(out, t_now, mono)

    async def _publish_event(self, out: EventOut, t_now: float, mono: float) -> None:
        if out.phase is EventPhase.new:
            self._event_ids[out.key] = new_id()
        event_id = self._event_ids.get(out.key) or new_id()
        if out.phase is EventPhase.end:
            self._event_ids.pop(out.key, None)
        msg = Event(
            **self._ids(),
            event_id=event_id,
            type=out.type,
            phase=out.phase,
            start=self._wall(out.start, t_now, mono),
            end=self._wall(out.t, t_now, mono) if out.phase is EventPhase.end else None,
            score=round(min(1.0, max(0.0, out.score)), 3),
            zone=out.zone,
            box=out.box,
        )
        await self._send(TopicKind.event, msg)
        logger.info(
            "event", type=out.type.value, phase=out.phase.value, room=self.room, device=self.device
        )

    async def _publish_state(self) -> None:
        state = self._state.state if self.monitoring else RoomStateName.paused
        msg = RoomState(
            **self._ids(),
            state=state,
            since=self._state_since,
            confidence=self._state.confidence if self.monitoring else 1.0,
        )
        await self._send(TopicKind.state, msg, retain=True)

    async def _heartbeat(self) -> None:
        while True:
            msg = Heartbeat(
                **self._ids(),
                uptime_s=round(time.monotonic() - self._started_at, 1),
                fps=round(self._fps, 2),
                agent_version=__version__,
                config_version=self.config_version,
                monitoring=self.monitoring,
            )
            await self._send(TopicKind.heartbeat, msg)
            await asyncio.sleep(self.cfg.heartbeat_s)

    async def _periodic_state(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.state_interval_s)
            await self._publish_state()

    # -- control: config and commands ---------------------------------------------------

    async def _control(self) -> None:
        async for msg in self.mqtt.messages():
            try:
                if msg.topic == self._topic(TopicKind.config_set):
                    await self._apply_config(msg)
                elif msg.topic == self._topic(TopicKind.command):
                    await self._command(decode(Command, msg.payload))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("control message refused", topic=msg.topic, error=str(exc))

    async def _apply_config(self, msg: Received) -> None:
        try:
            cfg = decode(DeviceConfig, msg.payload)
        except ValueError as exc:
            await self._send(
                TopicKind.config_state,
                ConfigState(**self._ids(), version=self.config_version, error=str(exc)[:500]),
                retain=True,
            )
            return
        self.params = RoomParams(fall_confirm_s=cfg.fall_confirm_s)
        self.config_version = cfg.version
        if cfg.monitoring != self.monitoring:
            self.monitoring = cfg.monitoring
            if cfg.monitoring:
                await self._start_analysis()
            else:
                # Paused or consent withdrawn: stop looking at once.
                self._stop_analysis.set()
                if self._source is not None:
                    self._source.close()
                    self._source = None
            await self._publish_state()
        await self._send(
            TopicKind.config_state, ConfigState(**self._ids(), version=cfg.version), retain=True
        )

    async def _command(self, cmd: Command) -> None:
        ok, result = True, {}
        if cmd.command == "ping":
            result = {"uptime_s": round(time.monotonic() - self._started_at, 1)}
        elif cmd.command == "publish_state":
            await self._publish_state()
        else:
            ok = False
        await self._send(
            TopicKind.command_response,
            CommandResponse(
                **self._ids(),
                correlation_id=cmd.correlation_id,
                ok=ok,
                result=result,
                error=None if ok else f"command {cmd.command!r} not supported",
            ),
        )
