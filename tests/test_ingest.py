"""Ingest against the real broker and database: stored once, bad input dead-lettered."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from nattillsyn.ingest.service import IngestService
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Availability, Event, Heartbeat, TopicKind, Topics, encode
from nattillsyn.protocol.validate import DeadLetter, Record, decode_message


def _event(seq: int, device: str = "d1", **kw) -> Event:
    now = datetime.now(UTC)
    return Event(
        site="site-1",
        room="r1",
        device=device,
        session=1,
        seq=seq,
        event_id=uuid.uuid4(),
        type="motion",
        phase="new",
        start=now,
        **kw,
    )


async def _poll(pool, query: str, want, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        async with pool.connection() as conn:
            row = await (await conn.execute(query)).fetchone()
        if row is not None and row[0] == want:
            return row[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"{query!r} gave {row}, wanted {want}")
        await asyncio.sleep(0.05)


def test_decode_rejects_bad_input() -> None:
    topics = Topics("nattillsyn")
    t = topics.device("site-1", "r1", "d1", TopicKind.event)
    good = encode(_event(0))
    assert isinstance(decode_message(topics, t, good, 65536), Record)
    cases = {
        b"{not json": "invalid JSON",
        b"[1,2]": "not a JSON object",
        good.replace(b'"v":1', b'"v":9'): "unknown schema version",
        good.replace(b'"seq":0', b'"seq":"x"'): "invalid event payload",
        good: "payload too large",
    }
    for payload, reason in cases.items():
        limit = 10 if reason == "payload too large" else 65536
        out = decode_message(topics, t, payload, limit)
        assert isinstance(out, DeadLetter) and reason in out.reason, (payload, out)
    other = topics.device("site-1", "r1", "d2", TopicKind.event)
    out = decode_message(topics, other, good, 65536)
    assert isinstance(out, DeadLetter) and "sender mismatch" in out.reason
    assert isinstance(decode_message(topics, "elsewhere/x", good, 65536), DeadLetter)


async def test_ingest_stores_once_and_dead_letters(settings, pool) -> None:
    topics = Topics(settings.topic_root)
    svc = IngestService(settings)
    await svc.start()
    pub = MqttClient(settings.mqtt_url, f"pub-{uuid.uuid4().hex[:8]}")
    await pub.start()
    try:
        t = topics.device("site-1", "r1", "d1", TopicKind.event)
        events = [_event(i) for i in range(50)]
        for e in events:
            await pub.publish(t, encode(e))
        # A redelivery or replay of the same messages must not duplicate rows.
        for e in events[:10]:
            await pub.publish(t, encode(e))
        await pub.publish(t, b"{broken")
        hb = Heartbeat(
            site="site-1",
            room="r1",
            device="d1",
            session=1,
            seq=60,
            uptime_s=3,
            fps=5,
            agent_version="0.1.0",
        )
        await pub.publish(topics.device("site-1", "r1", "d1", TopicKind.heartbeat), encode(hb))
        av = Availability(site="site-1", room="r1", device="d1", session=1, seq=61, state="online")
        await pub.publish(
            topics.device("site-1", "r1", "d1", TopicKind.availability), encode(av), retain=True
        )
        await _poll(pool, "SELECT count(*) FROM dead_letters", 1)
        await _poll(pool, "SELECT count(*) FROM heartbeats", 1)
        await _poll(pool, "SELECT availability FROM devices WHERE id = 'd1'", "online")
        await _poll(pool, "SELECT count(*) FROM events", 50)
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT reason, topic FROM dead_letters")).fetchone()
            assert "invalid JSON" in row[0] and row[1] == t
            dev = await (
                await conn.execute(
                    "SELECT agent_version, last_seq, session, room_id FROM devices WHERE id = 'd1'"
                )
            ).fetchone()
            assert dev == ("0.1.0", 61, 1, "r1")
            ids = {r[0] for r in await (await conn.execute("SELECT id FROM events")).fetchall()}
            assert ids == {e.id for e in events}
    finally:
        await pub.stop()
        await svc.stop()
