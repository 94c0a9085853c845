"""A test's ear on a broker: every message on a topic filter, kept in order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from nattillsyn.mqtt import MqttClient, Received


class Collector:
    """Every message on `topic_filter`, converted by `convert`, in `got` (start/stop or
    `async with`)."""

    def __init__(
        self,
        url: str,
        topic_filter: str,
        name: str,
        convert: Callable[[Received], Any] = lambda m: m,
    ) -> None:
        self.client = MqttClient(url, f"{name}-{uuid.uuid4().hex[:8]}")
        self.topic_filter = topic_filter
        self.convert = convert
        self.got: list = []
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.client.start()
        await self.client.subscribe(self.topic_filter, qos=1)
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for m in self.client.messages():
            self.got.append(self.convert(m))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.stop()

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
