"""Live updates for the tablets: alerts and room states from MQTT, rounds and visits from
the database (LISTEN `nattillsyn_live`), fanned out to WebSockets.

The hub keeps nothing but the connected sockets and never blocks on a slow client: each
has a bounded queue, and one that falls behind is disconnected (it reconnects and gets a
snapshot plus a replay of every alert change it missed, by `rev`). A locked tablet
(no staff signed in) receives alerts only, never room states or rounds. A staff socket
re-checks its session every `recheck_s`: when the PIN session ends (auto-lock, switch),
the socket closes with 4401 and the page falls back to its lock screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web
from prometheus_client import Counter, Gauge

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.db.listen import listen
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Alert, RoomState, TopicKind, Topics
from nattillsyn.protocol.validate import Record, decode_message
from nattillsyn.service import cancel_all

logger = log.get(__name__)

CLIENTS = Gauge("nattillsyn_api_ws_clients", "Connected WebSocket clients")
SENT = Counter("nattillsyn_api_ws_messages_total", "Messages sent to WebSocket clients", ["type"])
QUEUE = 256
LIVE_CHANNEL = "nattillsyn_live"


def to_message(rec: Record) -> dict | None:
    msg = rec.msg
    if isinstance(msg, Alert):
        return {"type": "alert", "alert": msg.model_dump(mode="json", exclude_none=True)}
    if isinstance(msg, RoomState):
        return {
            "type": "state",
            "room": msg.room,
            "state": msg.state.value,
            "since": msg.since.isoformat(),
            "updated": msg.ts.isoformat(),
            "confidence": msg.confidence,
        }
    return None


@dataclass(eq=False)
class Client:
    ws: web.WebSocketResponse
    site: str
    locked: bool = False  # tablet lock screen: alerts only
    groups: frozenset[str] = frozenset()  # escalation groups of the tablet
    sites: frozenset[str] = frozenset()  # units the signed-in user may see (escalations)
    still_valid: Callable[[], Awaitable[bool]] | None = None
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE))

    def wants(self, site: str, message: dict) -> bool:
        if message["type"] == "system":
            return site == self.site
        if message["type"] == "alert":
            if site == self.site:
                return True
            targets = set(message["alert"].get("targets", ()))
            return bool(
                self.groups & {t.removeprefix("group:") for t in targets} and site in self.sites
            )
        return site == self.site and not self.locked


class LiveHub:
    def __init__(
        self,
        mqtt_url: str,
        topics: Topics,
        client_id: str,
        database_url: str | None = None,
        schema: str = "public",
        recheck_s: float = 30.0,
        pool=None,
        stale_s: float = 30.0,
        clock: Clock = SYSTEM,
    ) -> None:
        self.clock = clock
        self.topics = topics
        self.mqtt = MqttClient(mqtt_url, client_id)
        self.database_url = database_url
        self.schema = schema
        self.recheck_s = recheck_s
        self.clients: set[Client] = set()
        self._tasks: list[asyncio.Task] = []
        self.pool = pool
        self.stale_s = stale_s
        self.alerting_ok: bool | None = None  # None: not known yet
        self.alerting_at: datetime | None = None

    async def start(self) -> None:
        await self.mqtt.start()
        await self.mqtt.subscribe(
            self.topics.subscription(TopicKind.alert),
            self.topics.subscription(TopicKind.state),
        )
        self._tasks = [asyncio.create_task(self._run(), name="api-live")]
        if self.database_url:
            self._tasks.append(asyncio.create_task(self._listen(), name="api-live-db"))
        self._tasks.append(asyncio.create_task(self._recheck(), name="api-live-recheck"))
        if self.pool is not None:
            self._tasks.append(asyncio.create_task(self._watch(), name="api-live-watch"))

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        for c in list(self.clients):
            await c.ws.close(code=1001, message=b"server shutdown")
        await self.mqtt.stop()

    async def _run(self) -> None:
        async for msg in self.mqtt.messages():
            rec = decode_message(self.topics, msg.topic, msg.payload, 65536)
            if not isinstance(rec, Record):
                continue
            out = to_message(rec)
            if out is None:
                continue
            self.broadcast(rec.topic.site, out)

    async def _listen(self) -> None:
        """Rounds and visits written by alerting or another api instance."""
        await listen(self.database_url, LIVE_CHANNEL, self._note, clock=self.clock)

    def _note(self, payload: str) -> None:
        try:
            data = json.loads(payload)
        except json.JSONDecodeError:
            return
        if data.get("schema") != self.schema or "type" not in data:
            return
        site = data.pop("site", None)
        data.pop("schema", None)
        if site:
            self.broadcast(site, data)

    async def _watch(self) -> None:
        """Is alerting alive? Every tablet hears about it at once when it is not."""
        while True:
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(
                        "SELECT at, now() FROM service_heartbeats WHERE service = 'alerting'"
                    )
                    row = await cur.fetchone()
                ok = row is not None and (row[1] - row[0]).total_seconds() <= self.stale_s
                self.alerting_at = row[0] if row else None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("alerting liveness unknown", error=str(exc))
                ok = False
            if ok != self.alerting_ok:
                self.alerting_ok = ok
                if not ok:
                    logger.error("alerting is silent: tablets are warned")
                for site in {c.site for c in self.clients}:
                    self.broadcast(site, self.system_message())
            await self.clock.sleep(min(5.0, self.stale_s / 3))

    def system_message(self) -> dict:
        return {
            "type": "system",
            "alerting_ok": self.alerting_ok,
            "alerting_at": self.alerting_at.isoformat() if self.alerting_at else None,
        }

    async def _recheck(self) -> None:
        while True:
            await self.clock.sleep(self.recheck_s)
            for c in list(self.clients):
                if c.still_valid is None:
                    continue
                try:
                    ok = await c.still_valid()
                except Exception:
                    continue
                if not ok:
                    self.clients.discard(c)
                    await c.ws.close(code=4401, message=b"session ended")

    def broadcast(self, site: str, message: dict) -> None:
        text = json.dumps(message)
        for c in list(self.clients):
            if not c.wants(site, message):
                continue
            try:
                c.queue.put_nowait(text)
            except asyncio.QueueFull:
                logger.warning("websocket client too slow; disconnecting")
                self.clients.discard(c)
                asyncio.get_running_loop().create_task(c.ws.close(code=1013))
            else:
                SENT.labels(message["type"]).inc()

    async def serve(self, client: Client, first: Callable[[], Awaitable[dict]] | dict) -> None:
        """Register, send the snapshot (`first`), then live messages until the socket closes."""
        self.clients.add(client)  # before the snapshot is made: nothing falls in between
        CLIENTS.set(len(self.clients))
        try:
            snapshot = first if isinstance(first, dict) else await first()
            sender = asyncio.create_task(self._send(client, json.dumps(snapshot, default=str)))
            try:
                async for _ in client.ws:  # the client sends only pings; reading keeps it alive
                    pass
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        finally:
            self.clients.discard(client)
            CLIENTS.set(len(self.clients))

    async def _send(self, client: Client, first: str) -> None:
        with contextlib.suppress(ConnectionError):
            await client.ws.send_str(first)
            while not client.ws.closed:
                await client.ws.send_str(await client.queue.get())
