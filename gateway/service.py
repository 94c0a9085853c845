"""The care-home gateway: bridges the site broker to the central broker.

Device messages (events, states, heartbeats, availability, config and command
answers) go up; server messages (config, commands, alerts, staff actions) come
down. Direction is decided by the contract's `sender` of each topic kind, so a
message never loops. paho keeps QoS 1 messages queued while a side is down.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import Counter

from nattillsyn import log, metrics
from nattillsyn.mqtt import MqttClient, Received
from nattillsyn.protocol import Topics
from nattillsyn.protocol.topics import SPEC
from nattillsyn.settings import Settings, SettingsError

logger = log.get(__name__)

FORWARDED = Counter("nattillsyn_gateway_forwarded_total", "Messages bridged", ["direction"])


class GatewayService:
    name = "gateway"

    def __init__(self, settings: Settings) -> None:
        if settings.gateway.upstream_url is None:
            raise SettingsError("the gateway needs NATTILLSYN_GATEWAY__UPSTREAM_URL")
        self.settings = settings
        self.topics = Topics(settings.topic_root)
        cid = f"nattillsyn-gateway-{settings.site}"
        self.local = MqttClient(
            settings.mqtt_url,
            f"{cid}-local",
            clean_start=False,
            session_expiry_s=86400,
            manual_ack=True,
        )
        self.upstream = MqttClient(
            settings.gateway.upstream_url,
            f"{cid}-up",
            clean_start=False,
            session_expiry_s=86400,
            manual_ack=True,
        )
        self._tasks: list[asyncio.Task] = []

    def _filters(self, sender: str) -> list[str]:
        site = self.settings.site
        return sorted(
            {
                self.topics.subscription(kind, site)
                for kind, spec in SPEC.items()
                if spec.sender == sender
            }
        )

    async def start(self) -> None:
        await self.local.start()
        await self.upstream.start()
        await self.local.subscribe(*self._filters("device"))
        await self.upstream.subscribe(*self._filters("server"))
        metrics.serve(self.settings.gateway.metrics_port)
        self._tasks = [
            asyncio.create_task(self._pump(self.local, self.upstream, "up"), name="gw-up"),
            asyncio.create_task(self._pump(self.upstream, self.local, "down"), name="gw-down"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.local.stop()
        await self.upstream.stop()

    async def _pump(self, src: MqttClient, dst: MqttClient, direction: str) -> None:
        async for msg in src.messages():
            await self._forward(msg, src, dst, direction)

    async def _forward(self, msg: Received, src: MqttClient, dst: MqttClient, d: str) -> None:
        # Acknowledged to the source only once the destination has it: nothing lost.
        await dst.publish(
            msg.topic, msg.payload, qos=max(1, msg.qos), retain=msg.retain, timeout=None
        )
        src.ack(msg)
        FORWARDED.labels(d).inc()
