"""Live updates: alert and room-state messages from MQTT, fanned out to WebSockets.

The hub validates each message with the shared contract, keeps nothing but the
set of connected sockets, and never blocks on a slow client: each socket has
its own bounded queue, and a client that falls behind is disconnected (it
reconnects and receives a fresh snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import Counter, Gauge

from nattillsyn import log
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Alert, RoomState, TopicKind, Topics
from nattillsyn.protocol.validate import Record, decode_message

logger = log.get(__name__)

CLIENTS = Gauge("nattillsyn_api_ws_clients", "Connected WebSocket clients")
SENT = Counter("nattillsyn_api_ws_messages_total", "Messages sent to WebSocket clients", ["type"])
QUEUE = 256


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
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE))


class LiveHub:
    def __init__(self, mqtt_url: str, topics: Topics, client_id: str) -> None:
        self.topics = topics
        self.mqtt = MqttClient(mqtt_url, client_id)
        self.clients: set[Client] = set()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.mqtt.start()
        await self.mqtt.subscribe(
            self.topics.subscription(TopicKind.alert),
            self.topics.subscription(TopicKind.state),
        )
        self._task = asyncio.create_task(self._run(), name="api-live")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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

    def broadcast(self, site: str, message: dict) -> None:
        text = json.dumps(message)
        for c in list(self.clients):
            if c.site != site:
                continue
            try:
                c.queue.put_nowait(text)
            except asyncio.QueueFull:
                logger.warning("websocket client too slow; disconnecting")
                self.clients.discard(c)
                asyncio.get_running_loop().create_task(c.ws.close(code=1013))
            else:
                SENT.labels(message["type"]).inc()

    async def serve(self, ws: web.WebSocketResponse, site: str, first: dict) -> None:
        """Send `first` (the snapshot), then live messages until the socket closes."""
        client = Client(ws, site)
        self.clients.add(client)  # before the snapshot is sent: nothing falls in between
        CLIENTS.set(len(self.clients))
        sender = asyncio.create_task(self._send(client, json.dumps(first)))
        try:
            async for _ in ws:  # the client sends only pings; reading keeps the socket alive
                pass
        finally:
            self.clients.discard(client)
            CLIENTS.set(len(self.clients))
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _send(self, client: Client, first: str) -> None:
        with contextlib.suppress(ConnectionError):
            await client.ws.send_str(first)
            while not client.ws.closed:
                await client.ws.send_str(await client.queue.get())
