"""bench.scale's load: one MQTT 3.1.1 QoS 1 connection per room on asyncio (10,000 fit in
one process), each sending what a room device sends at night."""

from __future__ import annotations

import asyncio
import random
import struct
import time
from datetime import UTC, datetime

from bench.ingest_wire import packet, parse, utf8
from nattillsyn.ids import new_id

ROOMS_PER_SITE = 40
HEARTBEAT_S, STATE_S, EVENT_S = 15.0, 60.0, 600.0
STATES = ("in_bed", "in_bed", "in_bed", "out_of_bed", "in_bathroom", "empty")
PUBACK, CONNACK = 4, 2


def per_room_rate() -> float:
    return 1 / HEARTBEAT_S + 1 / STATE_S + 2 / EVENT_S


class Room(asyncio.Protocol):
    """One room device's connection: CONNECT with a will, QoS 1 PUBLISH, counts PUBACKs."""

    def __init__(self, gen: Generator, index: int) -> None:
        self.gen = gen
        self.i = index
        self.site = f"site-{index // ROOMS_PER_SITE}"
        self.room = f"rum-{index}"
        self.device = f"edge-{index}"
        self.prefix = f"{gen.root}/{self.site}/{self.room}/{self.device}/"
        self.session = int(time.time() * 1000)
        self.seq = 0
        self.mid = 0
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.connected = asyncio.get_running_loop().create_future()
        self.state = random.choice(STATES)

    def connection_made(self, transport) -> None:
        self.transport = transport
        will = self._body("availability", '"state":"offline"')
        flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, will, will QoS 1, will retain
        var = utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", 120)
        payload = utf8(f"bench-{self.gen.root}-{self.i}") + utf8(self.prefix + "availability")
        payload += utf8(will)
        transport.write(packet(0x10, var + payload))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        packets, used = parse(self.buf)
        del self.buf[:used]
        for first, _, _ in packets:
            kind = first >> 4
            if kind == PUBACK:
                self.gen.acked += 1
            elif kind == CONNACK and not self.connected.done():
                self.connected.set_result(None)

    def connection_lost(self, exc) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"room {self.i}: {exc}"))
        self.gen.lost += 1 if not self.gen.closing else 0

    def _body(self, kind: str, fields: str) -> bytes:
        seq = self.seq
        self.seq += 1
        now = datetime.now(UTC).isoformat()
        return (
            f'{{"v":1,"id":"{new_id()}","ts":"{now}","site":"{self.site}","room":"{self.room}",'
            f'"device":"{self.device}","session":{self.session},"seq":{seq},{fields}}}'
        ).encode()

    def publish(self, kind: str, fields: str, retain: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.mid = self.mid % 65535 + 1
        topic = utf8(self.prefix + kind)
        body = topic + struct.pack("!H", self.mid) + self._body(kind, fields)
        self.transport.write(packet(0x32 | (1 if retain else 0), body))
        self.gen.sent += 1

    def heartbeat(self) -> None:
        up = time.time() - self.session / 1000
        self.publish(
            "heartbeat", f'"uptime_s":{up:.1f},"fps":5.0,"agent_version":"bench","queue":0'
        )

    def room_state(self) -> None:
        self.state = random.choice(STATES)
        now = datetime.now(UTC).isoformat()
        self.publish(
            "state", f'"state":"{self.state}","since":"{now}","confidence":0.8', retain=True
        )

    def event(self, kind: str, phase: str, event_id: str, start: str, score: float) -> None:
        end = f',"end":"{datetime.now(UTC).isoformat()}"' if phase == "end" else ""
        self.publish(
            "event",
            f'"event_id":"{event_id}","type":"{kind}","phase":"{phase}","start":"{start}",'
            f'"score":{score}{end}',
        )

    def close(self) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.write(b"\xe0\x00")  # DISCONNECT: no last will
            self.transport.close()


class Generator:
    """Rooms spread evenly over time: each tick sends the share of messages due."""

    def __init__(self, host: str, port: int, root: str) -> None:
        self.host, self.port, self.root = host, port, root
        self.rooms: list[Room] = []
        self.sent = self.acked = self.lost = 0
        self.closing = False
        self.speed = 1.0
        self.falls: dict[str, float] = {}  # event_id -> source time
        self._pending_ends: list[tuple[float, Room, str, str]] = []

    async def connect(self, n: int, concurrency: int = 200) -> None:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                room = Room(self, i)
                await loop.create_connection(lambda: room, self.host, self.port)
                await asyncio.wait_for(room.connected, 30)
                room.publish("availability", '"state":"online"', retain=True)
                self.rooms.append(room)

        await asyncio.gather(*(one(i) for i in range(len(self.rooms), n)))

    async def run(self, seconds: float, fall_every_s: float | None = None) -> None:
        tick = 0.1
        carry = {"hb": 0.0, "st": 0.0, "ev": 0.0}
        cursor = {"hb": 0, "st": 0, "ev": 0}
        next_fall = time.monotonic() + 1.0
        end = time.monotonic() + seconds
        nxt = time.monotonic()
        while time.monotonic() < end:
            n = len(self.rooms)
            for key, interval in (("hb", HEARTBEAT_S), ("st", STATE_S), ("ev", EVENT_S)):
                carry[key] += n * tick * self.speed / interval
                due = int(carry[key])
                carry[key] -= due
                for _ in range(due):
                    room = self.rooms[cursor[key] % n]
                    cursor[key] += 1
                    if key == "hb":
                        room.heartbeat()
                    elif key == "st":
                        room.room_state()
                    else:
                        eid, start = str(new_id()), datetime.now(UTC).isoformat()
                        room.event("motion", "new", eid, start, 0.4)
                        self._pending_ends.append(
                            (time.monotonic() + 10 / self.speed, room, eid, start)
                        )
            now = time.monotonic()
            while self._pending_ends and self._pending_ends[0][0] <= now:
                _, room, eid, start = self._pending_ends.pop(0)
                room.event("motion", "end", eid, start, 0.4)
            if fall_every_s and now >= next_fall:
                next_fall = now + fall_every_s
                room = self.rooms[random.randrange(min(ROOMS_PER_SITE, n))]
                eid, start = str(new_id()), datetime.now(UTC).isoformat()
                self.falls[eid] = time.time()
                room.event("possible_fall", "new", eid, start, 0.9)
            nxt += tick
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    def close(self) -> None:
        self.closing = True
        for r in self.rooms:
            r.close()
