"""The edge agent on a real Mosquitto: inclusion gate, remote config without restart,
commands (zone map), heartbeat and last will."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mqtt_collect import Collector

from nattillsyn.clock import ManualClock
from nattillsyn.edge.agent import EdgeAgent
from nattillsyn.edge.sources import Frame, Pacer
from nattillsyn.mqtt import MqttClient, Received
from nattillsyn.protocol import (
    Command,
    DeviceConfig,
    TopicKind,
    Topics,
    Zone,
    ZoneKind,
    encode,
)
from nattillsyn.settings import Settings


class SyntheticSource:
    """A 'camera' showing a person walking to and fro in a textured room, at `speed`."""

    opened = 0
    closed = 0
    lock = threading.Lock()

    def __init__(self, fps: float = 5.0, speed: float = 4.0, seconds: float = 1e9) -> None:
        self.fps, self.seconds = fps, seconds
        self._pacer = Pacer(speed)
        self._closed = threading.Event()
        rng = np.random.default_rng(5)
        self.base = np.full((120, 160), 100, np.uint8)
        for _ in range(20):
            x, y = rng.integers(0, 140), rng.integers(0, 100)
            self.base[y : y + 15, x : x + 15] = rng.integers(30, 220)
        with SyntheticSource.lock:
            SyntheticSource.opened += 1

    def frames(self) -> Iterator[Frame]:
        i = 0
        try:
            while not self._closed.is_set() and i / self.fps < self.seconds:
                t = i / self.fps
                img = self.base.copy()
                x = int(20 + 50 * (1 + np.sin(t)))  # walks between x=20 and x=120
                img[40:110, x : x + 14] = 15
                self._pacer.wait(t)
                yield Frame(t, img)
                i += 1
        finally:
            self.close()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pacer.cancel()
            with SyntheticSource.lock:
                SyntheticSource.closed += 1

    @classmethod
    def reset(cls) -> None:
        cls.opened = cls.closed = 0

    @classmethod
    def open_now(cls) -> int:
        return cls.opened - cls.closed


def edge_settings(mqtt_url: str, topic_root: str, tmp: Path, **edge) -> Settings:
    s = Settings(mqtt_url=mqtt_url, topic_root=topic_root, site="site-1")
    base = {
        "room": "rum-1",
        "device": "cam-1",
        "state_dir": tmp,
        "heartbeat_s": 0.3,
        "state_interval_s": 0.5,
    }
    return s.model_copy(update={"edge": s.edge.model_copy(update={**base, **edge})})


class Watcher(Collector):
    """Every message under the test's topic root, as received."""

    got: list[Received]

    def __init__(self, url: str, root: str) -> None:
        super().__init__(url, f"{root}/#", "watch")
        self.root = root

    def of(self, kind: TopicKind) -> list[dict]:
        suffix = "/" + kind.value
        out = []
        for m in self.got:
            if m.topic.endswith(suffix) and m.payload:
                head = m.topic[: -len(suffix)]
                if kind in (TopicKind.config_state, TopicKind.command_response) or not any(
                    head.endswith(x) for x in ("/config", "/command")
                ):
                    out.append(json.loads(m.payload))
        return out

    async def wait(self, pred, timeout: float = 15.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = pred()
            if result:
                return result
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


async def publish_config(url: str, topics: Topics, cfg: DeviceConfig) -> None:
    c = MqttClient(url, f"admin-{uuid.uuid4().hex[:8]}")
    await c.start()
    try:
        topic = topics.device("site-1", "rum-1", "cam-1", TopicKind.config_set)
        await c.publish(topic, encode(cfg), qos=1, retain=True)
    finally:
        await c.stop()


async def clear_retained(url: str, root: str) -> None:
    c = MqttClient(url, f"clean-{uuid.uuid4().hex[:8]}")
    await c.start()
    try:
        t = Topics(root)
        for kind in (TopicKind.config_set, TopicKind.state, TopicKind.availability):
            await c.publish(t.device("site-1", "rum-1", "cam-1", kind), b"", retain=True)
    finally:
        await c.stop()


@pytest.fixture
async def cleanup_retained(mqtt_url, topic_root):
    yield
    await clear_retained(mqtt_url, topic_root)


async def test_inclusion_gate_and_config_without_restart(
    mqtt_url, topic_root, tmp_path, cleanup_retained
) -> None:
    SyntheticSource.reset()
    topics = Topics(topic_root)
    # The agent's clock stands still: no periodic schedule check can open or close the
    # camera, only the configurations below do.
    clock = ManualClock()
    s = edge_settings(mqtt_url, topic_root, tmp_path)
    agent = EdgeAgent(s, source=SyntheticSource, clock=clock)
    async with Watcher(mqtt_url, topic_root) as w:
        await agent.start()
        try:
            # No config yet: no consent on record, the camera stays closed.
            await w.wait(lambda: any(s["state"] == "paused" for s in w.of(TopicKind.state)))
            assert SyntheticSource.opened == 0
            hb = await w.wait(lambda: w.of(TopicKind.heartbeat), what="heartbeat")
            assert hb[0]["monitoring"] is False and hb[0]["fps"] == 0

            # Consent recorded: the server sends monitoring on.
            await publish_config(mqtt_url, topics, DeviceConfig(version=1, monitoring=True))
            await w.wait(lambda: SyntheticSource.open_now() == 1, what="camera open")
            await w.wait(
                lambda: any(c["version"] == 1 for c in w.of(TopicKind.config_state)),
                what="config state 1",
            )
            await w.wait(
                lambda: w.of(TopicKind.state)[-1]["state"] not in ("paused",),
                what="a room state",
            )

            # New zones and thresholds: applied between two frames, no restart.
            zones = [Zone(name="bed", kind=ZoneKind.bed, polygon=[(0, 0), (1, 0), (1, 1)])]
            await publish_config(
                mqtt_url,
                topics,
                DeviceConfig(version=2, zones=zones, no_motion_s=60, fall_confirm_s=10),
            )
            await w.wait(
                lambda: any(c["version"] == 2 for c in w.of(TopicKind.config_state)),
                what="config state 2",
            )
            assert SyntheticSource.opened == 1
            await w.wait(
                lambda: agent.worker.analysis and agent.worker.analysis.zones.has(ZoneKind.bed)
            )
            assert agent.worker.analysis.model.params.fall_confirm_s == 10

            # A refused config says why and changes nothing.
            await publish_config(mqtt_url, topics, DeviceConfig(version=3, timezone="Mars/Base"))
            err = await w.wait(
                lambda: [c for c in w.of(TopicKind.config_state) if c.get("error")],
                what="config error",
            )
            assert err[0]["version"] == 2

            # Pause (or consent withdrawn): the camera closes on the config itself, not at
            # the next schedule check (GATE_CHECK_S on a clock that has not moved).
            await publish_config(mqtt_url, topics, DeviceConfig(version=4, monitoring=False))
            await w.wait(lambda: SyntheticSource.open_now() == 0, what="camera closed")
            await w.wait(lambda: w.of(TopicKind.state)[-1]["state"] == "paused", what="paused")
            assert clock.monotonic() == 0
            assert agent.worker.thread is None
        finally:
            await agent.stop()
    assert SyntheticSource.open_now() == 0


async def test_schedule_outside_window_keeps_the_camera_closed(
    mqtt_url, topic_root, tmp_path, cleanup_retained
) -> None:
    SyntheticSource.reset()
    now = time.gmtime()
    start = f"{(now.tm_hour + 2) % 24:02d}:00"
    end = f"{(now.tm_hour + 3) % 24:02d}:00"
    cfg = {
        "version": 7,
        "timezone": "UTC",
        "heartbeat_s": 0.3,
        "schedule": [{"start": start, "end": end}],
    }
    room = tmp_path / "room.json"
    room.write_text(json.dumps(cfg))
    s = edge_settings(mqtt_url, topic_root, tmp_path, room_config=room)
    agent = EdgeAgent(s, source=SyntheticSource)
    async with Watcher(mqtt_url, topic_root) as w:
        await agent.start()
        try:
            await w.wait(lambda: any(x["state"] == "paused" for x in w.of(TopicKind.state)))
            hb = await w.wait(lambda: w.of(TopicKind.heartbeat))
            assert hb[-1]["config_version"] == 7
            assert SyntheticSource.opened == 0
        finally:
            await agent.stop()


async def test_commands_and_zone_map(mqtt_url, topic_root, tmp_path, cleanup_retained) -> None:
    SyntheticSource.reset()
    topics = Topics(topic_root)
    s = edge_settings(mqtt_url, topic_root, tmp_path, monitor_without_config=True)
    agent = EdgeAgent(s, source=lambda: SyntheticSource(speed=8.0))
    async with Watcher(mqtt_url, topic_root) as w:
        await agent.start()
        cmd_topic = topics.device("site-1", "rum-1", "cam-1", TopicKind.command)
        admin = MqttClient(mqtt_url, f"admin-{uuid.uuid4().hex[:8]}")
        await admin.start()
        try:
            await w.wait(lambda: agent.worker.frames > 20, what="frames")
            ids = {}
            for name in ("ping", "zone_map", "publish_state", "restart"):
                cmd = Command(correlation_id=uuid.uuid4(), command=name)
                ids[name] = str(cmd.correlation_id)
                await admin.publish(cmd_topic, encode(cmd))
            await w.wait(lambda: len(w.of(TopicKind.command_response)) >= 4, what="responses")
            by_id = {r["correlation_id"]: r for r in w.of(TopicKind.command_response)}
            assert by_id[ids["ping"]]["ok"] and by_id[ids["ping"]]["result"]["uptime_s"] >= 0
            zm = by_id[ids["zone_map"]]
            assert zm["ok"], zm
            grid = zm["result"]
            assert grid["grid"] == [32, 24] and len(grid["motion"]) == 24
            assert all(len(row) == 32 and row.isdigit() for row in grid["motion"])
            assert any(c != "0" for row in grid["motion"] for c in row)  # someone walked
            assert grid["edges"] is None  # a person is in the room: no outlines
            assert by_id[ids["restart"]]["ok"]
            await w.wait(lambda: SyntheticSource.opened >= 2, what="restarted source")
            assert SyntheticSource.open_now() == 1
        finally:
            await admin.stop()
            await agent.stop()


class FlakyCamera(SyntheticSource):
    """Delivers a couple of seconds of frames, then the device fails (unplugged)."""

    def frames(self) -> Iterator[Frame]:
        for i, f in enumerate(super().frames()):
            if i >= 12:
                raise OSError("camera unplugged")
            yield f


async def test_failed_camera_is_reopened(mqtt_url, topic_root, tmp_path, cleanup_retained) -> None:
    SyntheticSource.reset()
    s = edge_settings(mqtt_url, topic_root, tmp_path, monitor_without_config=True)
    agent = EdgeAgent(s, source=lambda: FlakyCamera(speed=20.0))
    async with Watcher(mqtt_url, topic_root) as w:
        await agent.start()
        try:
            await w.wait(lambda: SyntheticSource.opened >= 2, timeout=20, what="reopened")
            states = [x["state"] for x in w.of(TopicKind.state)]
            seen = next(i for i, x in enumerate(states) if x not in ("unknown", "paused"))
            assert "unknown" in states[seen:]  # while the camera was gone
        finally:
            await agent.stop()


async def test_heartbeat_and_last_will(mqtt_url, topic_root, tmp_path, cleanup_retained) -> None:
    s = edge_settings(mqtt_url, topic_root, tmp_path, monitor_without_config=True)
    agent = EdgeAgent(s, source=SyntheticSource)
    async with Watcher(mqtt_url, topic_root) as w:
        await agent.start()
        try:
            beats = await w.wait(
                lambda: len(w.of(TopicKind.heartbeat)) >= 3 and w.of(TopicKind.heartbeat)
            )
            assert beats[-1]["monitoring"] is True and beats[-1]["queue"] >= 0
            seqs = [b["seq"] for b in beats]
            assert seqs == sorted(seqs)
            av = w.of(TopicKind.availability)
            assert av[0]["state"] == "online"
            # A crash: the connection drops without DISCONNECT, the broker sends the will.
            agent.mqtt.drop_connection()
            will = await w.wait(
                lambda: [a for a in w.of(TopicKind.availability) if a["state"] == "offline"],
                what="last will",
            )
            assert will[0]["seq"] == 0 and will[0]["session"] == agent.session
        finally:
            await agent.stop()


@pytest.fixture(autouse=True)
async def dump_tasks_on_hang():
    """If a test here hangs, show where every task waits (then pytest-timeout fires)."""
    loop = asyncio.get_running_loop()

    def dump() -> None:
        for t in asyncio.all_tasks(loop):
            t.print_stack(limit=8)

    handle = loop.call_later(50, dump)
    yield
    handle.cancel()


async def test_last_config_survives_a_restart(mqtt_url, topic_root, tmp_path, cleanup_retained):
    """A device that restarts without the server keeps its consent, schedule and zones."""
    SyntheticSource.reset()
    topics = Topics(topic_root)
    s = edge_settings(mqtt_url, topic_root, tmp_path)
    a = EdgeAgent(s, source=SyntheticSource)
    async with Watcher(mqtt_url, topic_root) as w:
        await a.start()
        try:
            cfg = DeviceConfig(version=9, monitoring=False, heartbeat_s=0.3, no_motion_s=120)
            await publish_config(mqtt_url, topics, cfg)
            await w.wait(lambda: any(c["version"] == 9 for c in w.of(TopicKind.config_state)))
        finally:
            await a.stop()
    await clear_retained(mqtt_url, topic_root)  # the server is gone
    b = EdgeAgent(s, source=SyntheticSource)
    assert b.config is not None and b.config.version == 9 and b.config.no_motion_s == 120
    async with Watcher(mqtt_url, topic_root) as w:
        await b.start()
        try:
            hb = await w.wait(lambda: w.of(TopicKind.heartbeat), what="heartbeat")
            assert hb[-1]["config_version"] == 9 and hb[-1]["monitoring"] is False
            assert SyntheticSource.opened == 0  # still paused: the camera never opened
        finally:
            await b.stop()
