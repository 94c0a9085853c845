"""Shared by the ingest tests: a motion event, and ingest running with a publisher."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from nattillsyn.ingest.service import IngestService
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Event
from nattillsyn.settings import Settings


def motion_event(
    seq: int,
    *,
    site: str = "site-1",
    room: str = "r1",
    device: str = "d1",
    session: int = 1,
    start: datetime | None = None,
    **kw,
) -> Event:
    """A device's `motion` event (phase `new`) with a fresh event id."""
    return Event(
        site=site,
        room=room,
        device=device,
        session=session,
        seq=seq,
        event_id=uuid.uuid4(),
        type="motion",
        phase="new",
        start=start or datetime.now(UTC),
        **kw,
    )


async def rows(pool, query: str, *params: object) -> list[tuple]:
    """The rows of one query, on a connection of the pool."""
    async with pool.connection() as conn:
        return await (await conn.execute(query, params or None)).fetchall()


@asynccontextmanager
async def ingest_with_publisher(settings: Settings) -> AsyncIterator[MqttClient]:
    """An ingest service on `settings` and a started MQTT client to publish to it."""
    svc = IngestService(settings)
    await svc.start()
    pub = MqttClient(settings.mqtt_url, f"pub-{uuid.uuid4().hex[:8]}")
    await pub.start()
    try:
        yield pub
    finally:
        await pub.stop()
        await svc.stop()
