"""What the partition puts on the network besides the services: synthetic rooms, a
staff client on a broker, a tablet on the gateway's page."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from datetime import UTC, datetime

import aiohttp

from nattillsyn.alerting import rules
from nattillsyn.ids import new_id
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Event, Heartbeat, RoomState, TopicKind, Topics, encode

SITE, REF_SITE = "site-1", "site-2"
ROOT = "nattillsyn"
CENTRE_PORT = 1883  # the centre's broker, where the sites connect


class Rooms:
    """Room devices sending contract messages: heartbeat, state, motion events; falls on request.
    Every message id is remembered (to count what reached the centre)."""

    def __init__(self, url: str, site: str, n: int, hb_s: float, rate: float) -> None:
        self.topics = Topics(ROOT)
        self.site = site
        self.rooms = [f"rum-{101 + i}" for i in range(n)]
        self.clients = {
            r: MqttClient(url, f"dev-{site}-{r}-{uuid.uuid4().hex[:4]}") for r in self.rooms
        }
        self.seq = dict.fromkeys(self.rooms, 0)
        self.session = int(time.time() * 1000)
        self.hb_s, self.rate = hb_s, rate
        self.ids: list[str] = []
        self.kinds: dict[str, int] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        for c in self.clients.values():
            await c.start()
        self._task = asyncio.create_task(self._run())

    def _base(self, room: str) -> dict:
        self.seq[room] += 1
        return {"site": self.site, "room": room, "device": f"cam-{room}",
                "session": self.session, "seq": self.seq[room]}  # fmt: skip

    def send(self, room: str, kind, msg, retain: bool = False) -> None:
        self.ids.append(str(msg.id))
        self.kinds[kind.value] = self.kinds.get(kind.value, 0) + 1
        topic = self.topics.device(self.site, room, f"cam-{room}", kind)
        self.clients[room].publish_nowait(topic, encode(msg), qos=1, retain=retain)

    async def _run(self) -> None:
        rnd = random.Random(7)
        states = ["in_bed", "in_bed", "in_bed", "out_of_bed", "in_bathroom", "in_bed"]
        last_hb = 0.0
        t0 = time.monotonic()
        step = 1.0 / self.rate if self.rate > 0 else 3600
        for room in self.rooms:
            self.send(room, TopicKind.state, RoomState(**self._base(room), state="in_bed",
                      since=datetime.now(UTC), confidence=0.9), retain=True)  # fmt: skip
        while True:
            now = time.monotonic()
            if now - last_hb >= self.hb_s:
                last_hb = now
                for room in self.rooms:
                    self.send(room, TopicKind.heartbeat, Heartbeat(
                        **self._base(room), uptime_s=now - t0, fps=5.0, agent_version="bench"))  # fmt: skip
            room = rnd.choice(self.rooms)
            if rnd.random() < 0.25:
                # Short excursions only, so no delayed rule (10 min and more) fires.
                self.send(room, TopicKind.state, RoomState(**self._base(room), state=rnd.choice(states),
                          since=datetime.now(UTC), confidence=0.8), retain=True)  # fmt: skip
            else:
                eid, ts = new_id(), datetime.now(UTC)
                for phase in ("new", "end"):
                    self.send(room, TopicKind.event, Event(
                        **self._base(room), event_id=eid, type="motion", phase=phase, start=ts,
                        end=ts if phase == "end" else None, score=0.3))  # fmt: skip
            await asyncio.sleep(step)

    def fall(self, room: str):
        ev = Event(**self._base(room), event_id=new_id(), type="possible_fall", phase="new",
                   start=datetime.now(UTC), score=0.95)  # fmt: skip
        self.send(room, TopicKind.event, ev)
        return ev

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for c in self.clients.values():
            with contextlib.suppress(Exception):
                await c.stop()


class AlertWatch:
    """Alert publications seen on a broker, with their arrival time."""

    def __init__(self, url: str, name: str) -> None:
        self.client = MqttClient(url, f"{name}-{uuid.uuid4().hex[:6]}")
        self.seen: list[tuple[float, dict]] = []
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.client.start()
        await self.client.subscribe(Topics(ROOT).subscription(TopicKind.alert))
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for m in self.client.messages():
            with contextlib.suppress(ValueError):
                self.seen.append((time.time(), json.loads(m.payload)))

    def first(self, alert_id: str, notify: str | None = None) -> float | None:
        for t, a in self.seen:
            if a.get("alert_id") == alert_id and (notify is None or a.get("notify") == notify):
                return t
        return None

    def new_ids(self, alert_id: str) -> list[str]:
        """Message ids of the publications announcing it as new (a relayed copy keeps its id)."""
        return sorted({a["id"] for _, a in self.seen
                       if a.get("alert_id") == alert_id and a.get("notify") == "new"})  # fmt: skip

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        with contextlib.suppress(Exception):
            await self.client.stop()


class Tablet:
    """A tablet on the gateway's page: signed in, live over the WebSocket."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.seen: list[tuple[float, dict]] = []
        self.system: list[dict] = []
        self._task: asyncio.Task | None = None
        self.session = None

    async def start(self) -> None:
        # The page is served on an address, not a name: the cookie jar must accept that.
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        r = await self.session.post(f"{self.base}api/v1/login",
                                    json={"username": "natt", "password": "natt-demo"})  # fmt: skip
        if r.status != 200:
            raise RuntimeError(f"tablet sign-in on the gateway failed: {r.status} {await r.text()}")
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self.session is not None
        while True:
            try:
                async with self.session.ws_connect(f"{self.base}api/v1/ws?site={SITE}") as ws:
                    async for m in ws:
                        if m.type is not aiohttp.WSMsgType.TEXT:
                            continue
                        data = json.loads(m.data)
                        now = time.time()
                        if data.get("type") == "alert":
                            self.seen.append((now, data["alert"]))
                        elif data.get("type") == "snapshot":
                            for a in data.get("alerts", []):
                                self.seen.append((now, {**a, "_snapshot": True}))
                        elif data.get("type") == "system":
                            self.system.append({**data, "at": now})
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)

    def first(self, alert_id: str) -> float | None:
        for t, a in self.seen:
            if a.get("alert_id") == alert_id and not a.get("_snapshot"):
                return t
        return None

    def new_ids(self, alert_id: str) -> list[str]:
        return sorted({a["id"] for _, a in self.seen
                       if a.get("alert_id") == alert_id and a.get("notify") == "new"})  # fmt: skip

    async def acknowledge(self, alert_id: str) -> int:
        assert self.session is not None
        r = await self.session.post(f"{self.base}api/v1/alerts/{alert_id}/acknowledge", json={})
        return r.status

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self.session:
            await self.session.close()


def alert_id_for(site: str, room: str, event_id: str) -> str:
    return str(rules.alert_id(site, room, "possible_fall", f"event:{event_id}"))
