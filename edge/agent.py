"""The edge agent: frames in (in a worker thread), contract messages out.

Frames never leave the worker thread (`worker.AnalysisWorker`): it runs the complete
analysis (`pipeline.Analysis`) and hands only its small outputs to the asyncio loop,
which turns them into contract messages.

- **Events** are encoded once, written to the on-disk queue (`store.Store`) and
  published from there in order, one at a time, each removed only after the
  broker's PUBACK (`outbox.EventOutbox`): nothing is lost or reordered across a broker
  outage, a restart or a power cut (a redelivery keeps its message id, consumers dedupe).
- **State, heartbeat, availability** are live: retained state is re-published on
  every (re)connection, so nothing of them needs to be queued.
- **Inclusion gate**: the camera is open and analysed only while the room
  configuration says `monitoring` and the time is inside its schedule; otherwise
  the source is closed and the state is `paused`.
- **Configuration** (`…/config/set`, retained) is applied between two frames,
  without a restart, and kept on disk for the next start.
- Timers (heartbeat, state, schedule checks, retries) run on an injected `Clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Gauge

from nattillsyn import __version__, log, metrics
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.mqtt import MqttClient, MqttError, TlsFiles, Will
from nattillsyn.protocol import (
    Availability,
    DeviceConfig,
    Heartbeat,
    RoomState,
    RoomStateName,
    TopicKind,
    Topics,
    encode,
)
from nattillsyn.settings import Settings

from .control import RemoteControl
from .evaluate import load_room_config
from .outbox import EventOutbox
from .pipeline import Analysis
from .room import EventOut, Output, RoomParams, StateChange
from .schedule import monitoring_allowed
from .sources import FrameSource, open_source
from .store import Store
from .worker import AnalysisWorker

logger = log.get(__name__)

MONITORING = Gauge("nattillsyn_edge_monitoring", "1 while the camera is analysed.", ["device"])

GATE_CHECK_S = 15.0  # how often the schedule is re-checked


class EdgeAgent(RemoteControl):
    name = "edge"

    def __init__(
        self,
        settings: Settings,
        source: Callable[[], FrameSource] | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        """`source` makes a frame source (again after a pause); default: from settings."""
        self.settings = settings
        self.cfg = settings.edge
        self.clock = clock
        self.topics = Topics(settings.topic_root)
        self.site, self.room, self.device = settings.site, self.cfg.room, self.cfg.device
        # An identity (also in the client id), not a timer: unique per start, so real time.
        self.session = time.time_ns() // 1_000_000
        self._seq = 1  # 0 is the last will
        self._make_source = source or self._source_from_settings
        self._started_at = clock.monotonic()
        state_dir = self.cfg.state_dir or (
            Path(os.environ["STATE_DIRECTORY"].split(":")[0])
            if os.environ.get("STATE_DIRECTORY")
            else None
        )
        self.store = Store.for_device(
            state_dir, f"edge-{self.site}-{self.room}-{self.device}", self.cfg.queue_max_events
        )
        if state_dir is None:
            logger.warning("no state_dir: the event queue is in memory and lost on restart")
        self.config: DeviceConfig | None = self._initial_config()
        self.config_version = self.config.version if self.config else 0
        self.monitoring = False
        will = Availability(
            site=self.site,
            room=self.room,
            device=self.device,
            session=self.session,
            seq=0,
            state="offline",
        )
        files = (self.cfg.tls_ca_file, self.cfg.tls_cert_file, self.cfg.tls_key_file)
        tls = TlsFiles(*(str(f) if f else None for f in files)) if any(files) else None
        self.mqtt = MqttClient(
            settings.mqtt_url or "mqtt://127.0.0.1:1883",
            f"edge-{self.site}-{self.device}-{self.session}",
            will=Will(self._topic(TopicKind.availability), encode(will)),
            tls=tls,
        )
        self.worker = AnalysisWorker(self.device, self._new_analysis, clock)
        self.outbox = EventOutbox(
            self.store,
            self.mqtt,
            self._topic(TopicKind.event),
            self._ids,
            self.room,
            self.device,
            self.cfg.replay_speed,
            clock,
        )
        self._outputs: asyncio.Queue[tuple[float, float, list[Output]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._state = StateChange(RoomStateName.unknown, 0.0, 0.0)
        self._state_since = clock.now()
        self._beat_now = asyncio.Event()  # a heartbeat at once (after a connection, a config)
        self._gate_lock = asyncio.Lock()
        self._live_published = 0

    @property
    def published(self) -> int:
        """Messages the broker took: live ones and queued events."""
        return self._live_published + self.outbox.published

    @property
    def events_created(self) -> int:
        return self.outbox.created

    @property
    def events_published(self) -> int:
        return self.outbox.published

    # -- configuration at start -----------------------------------------------------

    def _initial_config(self) -> DeviceConfig | None:
        """The last applied config (disk), else the room-configuration file, else none."""
        cfg: DeviceConfig | None = None
        if self.cfg.room_config is not None:
            cfg = load_room_config(self.cfg.room_config)
        saved = self.store.get("config")
        if saved:
            with contextlib.suppress(ValueError):
                stored = DeviceConfig.model_validate_json(saved)
                if cfg is None or stored.version >= cfg.version:
                    cfg = stored
        return cfg

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self.mqtt.on_connect(self._announce)
        metrics.serve(self.cfg.metrics_port)
        self.outbox.gauge()
        self.outbox.wakeup.set()  # events left from before a restart go first
        self._tasks = [
            asyncio.create_task(self._connect(), name="edge-connect"),
            asyncio.create_task(self._publish_outputs(), name="edge-publish"),
            asyncio.create_task(self.outbox.drain(), name="edge-queue"),
            asyncio.create_task(self._heartbeat(), name="edge-heartbeat"),
            asyncio.create_task(self._periodic_state(), name="edge-state"),
            asyncio.create_task(self._control(), name="edge-control"),
            asyncio.create_task(self._gate_loop(), name="edge-gate"),
        ]
        await self._gate()
        # Wait a moment for the broker so the retained config applies before we start
        # guessing; a device without network keeps analysing and queues its events.
        # (I/O deadlines like this one stay on real time: a test clock moves no broker.)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.mqtt.connected.wait(), 5)

    async def _connect(self) -> None:
        await self.mqtt.start_retrying(self.clock, device=self.device)
        await self.mqtt.subscribe(
            self._topic(TopicKind.config_set), self._topic(TopicKind.command), qos=1
        )

    async def stop(self) -> None:
        await self._stop_analysis()
        # Give the queue a moment to flush while the broker is there; the rest waits on disk.
        if self.mqtt.connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.idle.wait(), 3.0)
        for t in self._tasks:
            t.cancel()
        await asyncio.wait(self._tasks, timeout=5)
        # A clean stop says so: offline, retained (the will is only for crashes).
        if self.mqtt.connected.is_set():
            with contextlib.suppress(Exception):
                await self._send(
                    TopicKind.availability,
                    Availability(**self._ids(), state="offline"),
                    retain=True,
                    timeout=5,
                )
        with contextlib.suppress(Exception):
            await self.mqtt.stop()
        self.store.close()

    # -- inclusion gate ---------------------------------------------------------------

    def _allowed(self) -> bool:
        return monitoring_allowed(
            self.config, self.clock.now(), default=self.cfg.monitor_without_config
        )

    async def _gate(self) -> None:
        """Open or close the camera to match the configuration and the schedule."""
        async with self._gate_lock:
            want = self._allowed()
            if want == self.monitoring:
                return
            self.monitoring = want
            MONITORING.labels(self.device).set(1 if want else 0)
            if want:
                logger.info("monitoring on", device=self.device)
                await self._start_analysis()
            else:
                logger.info("monitoring paused: camera closed", device=self.device)
                await self._stop_analysis()
            await self._publish_state()

    async def _stop_analysis(self) -> None:
        """Close the camera; what the analysis produced before it stopped is handled (events
        go to disk) and open events end."""
        await self.worker.stop()
        while not self._outputs.empty():
            await self._handle_outputs(*self._outputs.get_nowait())
        await self.outbox.end_open_events()

    async def _gate_loop(self) -> None:
        while True:
            await self.clock.sleep(GATE_CHECK_S)
            await self._gate()

    # -- analysis (worker thread) ---------------------------------------------------

    async def _start_analysis(self) -> None:
        await self.worker.stop()
        try:
            source = self._make_source()
        except Exception as exc:
            logger.error("camera failed", device=self.device, error=str(exc)[:300])
            self._source_failed()
            return
        analysis = self._new_analysis()
        # A fresh view: nothing known until the analysis (or the resumed state) says so.
        self._state = StateChange(RoomStateName.unknown, 0.0, 0.0)
        self._state_since = self.clock.now()
        self._resume(analysis)
        self.worker.start(source, analysis, self._deliver, self._source_failed)

    def _deliver(self, t: float, mono: float, outputs: list[Output]) -> None:
        self._outputs.put_nowait((t, mono, outputs))

    def _new_analysis(self) -> Analysis:
        return Analysis(
            self.config,
            width=self.cfg.width,
            base_params=RoomParams(fall_confirm_s=self.cfg.fall_confirm_s),
        )

    def _resume(self, analysis: Analysis) -> None:
        """After a restart or pause, resume the last state if it is recent enough."""
        saved = self.store.get("state")
        if not saved:
            return
        with contextlib.suppress(ValueError, KeyError, TypeError):
            doc = json.loads(saved)
            name, age = doc["state"], self.clock.now().timestamp() - float(doc["at"])
            if 0 <= age <= self.cfg.resume_max_s:
                analysis.restore(RoomStateName(name), 0.0)
                logger.info("resumed room state", state=name, age_s=round(age))

    def _source_from_settings(self) -> FrameSource:
        return open_source(
            self.cfg.source,
            fps=self.config.fps if self.config else self.cfg.fps,
            width=self.cfg.width,
            replay_speed=self.cfg.replay_speed,
            loop=self.cfg.loop,
            hold_last_s=self.cfg.hold_last_s,
        )

    def _source_failed(self) -> None:
        """The camera stopped (unplugged, stream down): try again with a growing pause."""
        delay = self.worker.retry_s
        self.worker.retry_s = min(60.0, self.worker.retry_s * 2)

        async def retry() -> None:
            await self.clock.sleep(delay)
            async with self._gate_lock:
                if self.monitoring and not self.worker.alive:
                    logger.info("reopening camera", device=self.device)
                    await self._start_analysis()

        self._tasks.append(asyncio.create_task(retry(), name="edge-camera-retry"))

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

    async def _send(self, kind: TopicKind, msg, retain: bool = False, timeout=10.0) -> None:
        await self.mqtt.publish(
            self._topic(kind), encode(msg), qos=1, retain=retain, timeout=timeout
        )
        self._live_published += 1

    async def _send_live(self, kind: TopicKind, msg, retain: bool = False) -> bool:
        """Publish a live message (state, heartbeat, …); offline it is skipped, not queued."""
        if not self.mqtt.connected.is_set():
            return False
        try:
            await self._send(kind, msg, retain=retain)
            return True
        except (MqttError, TimeoutError) as exc:
            logger.warning("publish failed", kind=kind.value, error=str(exc))
            return False

    def _announce(self) -> None:
        msg = Availability(**self._ids(), state="online")
        self.mqtt.publish_nowait(self._topic(TopicKind.availability), encode(msg), retain=True)
        self._tasks.append(asyncio.create_task(self._publish_state()))
        self._beat_now.set()
        self.outbox.wakeup.set()

    async def _publish_outputs(self) -> None:
        while True:
            await self._handle_outputs(*await self._outputs.get())

    async def _handle_outputs(self, t_now: float, mono: float, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, StateChange):
                self._state = out
                self._state_since = self.outbox.wall(out.since, t_now, mono)
                at = round(self.clock.now().timestamp())
                saved = json.dumps({"state": out.state.value, "at": at})
                await asyncio.to_thread(self.store.set, "state", saved)
                await self._publish_state()
            elif isinstance(out, EventOut):
                await self.outbox.event(out, t_now, mono)

    async def _publish_state(self) -> None:
        paused = not self.monitoring
        msg = RoomState(
            **self._ids(),
            state=RoomStateName.paused if paused else self._state.state,
            since=self._state_since if not paused else self.clock.now(),
            confidence=1.0 if paused else self._state.confidence,
            motion=0.0 if paused else min(1.0, self._state.motion),
        )
        await self._send_live(TopicKind.state, msg, retain=True)

    async def _heartbeat(self) -> None:
        """Every `heartbeat_s`, and at once after each (re)connection."""
        while True:
            await self.mqtt.connected.wait()
            self._beat_now.clear()
            msg = Heartbeat(
                **self._ids(),
                uptime_s=round(self.clock.monotonic() - self._started_at, 1),
                fps=round(self.worker.fps if self.monitoring else 0.0, 2),
                agent_version=__version__,
                config_version=self.config_version,
                queue=len(self.store),
                monitoring=self.monitoring,
            )
            await self._send_live(TopicKind.heartbeat, msg)
            interval = self.config.heartbeat_s if self.config else self.cfg.heartbeat_s
            await self.clock.wait(self._beat_now, interval)

    async def _periodic_state(self) -> None:
        while True:
            await self.clock.sleep(self.cfg.state_interval_s)
            analysis = self.worker.analysis
            if analysis is not None:
                cur = analysis.model.current()
                self._state = StateChange(
                    self._state.state, self._state.since, cur.confidence, cur.motion, cur.zone
                )
            await self._publish_state()
