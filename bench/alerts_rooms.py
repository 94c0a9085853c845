"""bench.alerts' background traffic: simulated room devices sending heartbeats, room states
and motion events like edge agents (a room can fall silent to test offline detection)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Event, Heartbeat, RoomState, TopicKind, Topics, encode


class Rooms:
    """Simulated room devices: heartbeats, states and motion events, like edge agents."""

    def __init__(self, mqtt_url: str, topics: Topics, rooms: list[tuple[str, str]], hb_s: float):
        self.topics = topics
        self.rooms = rooms
        self.hb_s = hb_s
        self.clients = [
            MqttClient(mqtt_url, f"bench-rooms-{i}-{uuid.uuid4().hex[:6]}") for i in range(4)
        ]
        self.seq = 0
        self.session = int(time.time() * 1000)
        self.sent = 0
        self.silent: set[tuple[str, str]] = set()
        self.last_hb: dict[tuple[str, str], float] = {}
        self._task: asyncio.Task | None = None
        self.started = time.monotonic()

    async def start(self) -> None:
        for c in self.clients:
            await c.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for c in self.clients:
            await c.stop()

    def _ids(self, site: str, room: str) -> dict:
        self.seq += 1
        return dict(site=site, room=room, device=f"cam-{room}", session=self.session, seq=self.seq)

    def _pub(self, i: int, site: str, room: str, kind: TopicKind, msg, retain=False) -> None:
        c = self.clients[i % len(self.clients)]
        c.publish_nowait(
            self.topics.device(site, room, f"cam-{room}", kind), encode(msg), retain=retain
        )
        self.sent += 1

    async def _run(self) -> None:
        # Each room has its own phase; the loop runs 10 times a second.
        n = len(self.rooms)
        phase = [random.random() * self.hb_s for _ in range(n)]
        next_hb = [self.started + p for p in phase]
        next_state = [self.started + random.random() * 60 for _ in range(n)]
        next_motion = [self.started + random.random() * 20 for _ in range(n)]
        motion_open: dict[int, uuid.UUID] = {}
        since = datetime.now(UTC) - timedelta(hours=2)
        while True:
            now = time.monotonic()
            for i, (site, room) in enumerate(self.rooms):
                if now >= next_hb[i]:
                    next_hb[i] += self.hb_s
                    if (site, room) not in self.silent:
                        hb = Heartbeat(**self._ids(site, room), uptime_s=now - self.started,
                                       fps=5.0, agent_version="bench")  # fmt: skip
                        self._pub(i, site, room, TopicKind.heartbeat, hb)
                        self.last_hb[(site, room)] = time.time()
                if (site, room) in self.silent:
                    continue
                if now >= next_state[i]:
                    next_state[i] += 60
                    name = "in_chair" if random.random() < 0.1 else "in_bed"
                    st = RoomState(**self._ids(site, room), state=name, since=since, confidence=0.8)
                    self._pub(i, site, room, TopicKind.state, st, retain=True)
                if now >= next_motion[i]:
                    next_motion[i] += 20
                    t = datetime.now(UTC)
                    if i in motion_open:
                        eid = motion_open.pop(i)
                        ev = Event(**self._ids(site, room), event_id=eid, type="motion",
                                   phase="end", start=t - timedelta(seconds=3), end=t)  # fmt: skip
                    else:
                        eid = motion_open[i] = uuid.uuid4()
                        ev = Event(**self._ids(site, room), event_id=eid, type="motion",
                                   phase="new", start=t, score=0.1)  # fmt: skip
                    self._pub(i, site, room, TopicKind.event, ev)
            await asyncio.sleep(0.1)
