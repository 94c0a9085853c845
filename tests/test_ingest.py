"""Ingest against the real broker and database: stored once, bad input dead-lettered."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from ingest_helpers import ingest_with_publisher, motion_event, rows
from prometheus_client import REGISTRY

from nattillsyn.ingest.service import decode_for_storage, reason_label
from nattillsyn.ingest.writer import DeviceSeen, build_rows, write_batch, write_devices
from nattillsyn.protocol import (
    Availability,
    ConfigState,
    Event,
    Heartbeat,
    RoomState,
    TopicKind,
    Topics,
    encode,
)
from nattillsyn.protocol.validate import DeadLetter, Record, decode_message

# Storage-related: every database test runs on plain PostgreSQL and on TimescaleDB.
pytestmark = pytest.mark.both_backends


async def _poll(pool, query: str, want, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        row = next(iter(await rows(pool, query)), None)
        if row is not None and row[0] == want:
            return row[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"{query!r} gave {row}, wanted {want}")
        await asyncio.sleep(0.05)


def test_decode_rejects_bad_input() -> None:
    topics = Topics("nattillsyn")
    t = topics.device("site-1", "r1", "d1", TopicKind.event)
    good = encode(motion_event(0))
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
    async with ingest_with_publisher(settings) as pub:
        t = topics.device("site-1", "r1", "d1", TopicKind.event)
        events = [motion_event(i) for i in range(50)]
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
        # Last-seen and heartbeat fields follow within ingest.device_flush_ms.
        await _poll(pool, "SELECT agent_version FROM devices WHERE id = 'd1'", "0.1.0")
        reason, topic = (await rows(pool, "SELECT reason, topic FROM dead_letters"))[0]
        assert "invalid JSON" in reason and topic == t
        dev = await rows(
            pool, "SELECT agent_version, last_seq, session, room_id FROM devices WHERE id = 'd1'"
        )
        assert dev == [("0.1.0", 61, 1, "r1")]
        ids = {r[0] for r in await rows(pool, "SELECT id FROM events")}
        assert ids == {e.id for e in events}


# -- the dead-letter path: a corpus of malformed messages ----------------------------------

GOOD_EVENT = {
    "v": 1,
    "id": "0193a0b0-0000-7000-8000-000000000001",
    "ts": "2026-11-24T22:15:00Z",
    "site": "site-1",
    "room": "r1",
    "device": "d1",
    "session": 1,
    "seq": 1,
    "event_id": "0193a0b0-0000-7000-8000-0000000000e1",
    "type": "motion",
    "phase": "new",
    "start": "2026-11-24T22:15:00Z",
    "score": 0.5,
}


def _ev(**changes) -> bytes:
    body = {k: v for k, v in GOOD_EVENT.items() if changes.get(k, ...) is not None}
    body.update({k: v for k, v in changes.items() if v is not None})
    return json.dumps(body).encode()


def _without(key: str) -> bytes:
    return json.dumps({k: v for k, v in GOOD_EVENT.items() if k != key}).encode()


# (name, device in the topic or None for the good one, payload, expected reason label, text)
CORPUS = [
    ("truncated JSON", None, b'{"v":1,"id":', "invalid_json", "invalid JSON"),
    ("trailing garbage", None, _ev() + b"}", "invalid_json", "invalid JSON"),
    ("empty payload", None, b"", "invalid_json", "invalid JSON"),
    ("binary junk", None, bytes(range(256)), "invalid_json", "invalid JSON"),
    ("invalid UTF-8", None, b'{"v":1,"site":"\xff\xfe"}', "invalid_json", "invalid JSON"),
    ("single quotes", None, b"{'v': 1}", "invalid_json", "invalid JSON"),
    ("NaN score", None, _ev().replace(b'"score": 0.5', b'"score": NaN'), None, ""),
    ("array", None, b"[1, 2, 3]", "not_an_object", "not a JSON object"),
    ("string", None, b'"hello"', "not_an_object", "not a JSON object"),
    ("null", None, b"null", "not_an_object", "not a JSON object"),
    ("version 2", None, _ev(v=2), "schema_version", "unknown schema version: 2"),
    ("version as text", None, _ev(v="1"), "schema_version", "unknown schema version"),
    ("version missing", None, _without("v"), "schema_version", "unknown schema version: None"),
    ("version 0", None, _ev(v=0), "schema_version", "unknown schema version: 0"),
    ("seq as text", None, _ev(seq="x"), "invalid_payload", "seq"),
    ("negative seq", None, _ev(seq=-1), "invalid_payload", "seq"),
    ("score above 1", None, _ev(score=1.5), "invalid_payload", "score"),
    ("id not a uuid", None, _ev(id="not-a-uuid"), "invalid_payload", "id"),
    ("naive timestamp", None, _ev(ts="2026-11-24T22:15:00"), "invalid_payload", "ts"),
    ("ts not a date", None, _ev(ts="yesterday"), "invalid_payload", "ts"),
    ("unknown event type", None, _ev(type="explosion"), "invalid_payload", "type"),
    ("unknown phase", None, _ev(phase="middle"), "invalid_payload", "phase"),
    ("missing event_id", None, _without("event_id"), "invalid_payload", "event_id"),
    ("unknown field", None, _ev(camera_frame="AAAA"), "invalid_payload", "camera_frame"),
    ("box of three", None, _ev(box=[0.1, 0.2, 0.3]), "invalid_payload", "box"),
    ("site with slash", None, _ev(site="site/1"), "invalid_payload", "site"),
    ("object as zone", None, _ev(zone={"a": 1}), "invalid_payload", "zone"),
    ("oversize", None, _ev(zone="z" * 64) + b" " * 70_000, "too_large", "payload too large"),
    ("other device", "d2", _ev(), "sender_mismatch", "sender mismatch"),
    ("other room", "r2/d1", _ev(), "sender_mismatch", "sender mismatch"),
    ("NUL in a string", None, _ev(zone="a\u0000b"), "unstorable", "\\u0000"),
    (
        "lone surrogate",
        None,
        _ev().replace(b'"score"', b'"zone": "\\ud800", "score"'),
        "invalid_payload",
        "zone",
    ),
    ("seq beyond bigint", None, _ev(seq=2**70), "unstorable", "64 bits"),
    ("UTF-16", None, _ev().decode().encode("utf-16"), "unstorable", "UTF-8"),
    ("UTF-32", None, _ev().decode().encode("utf-32-le"), "unstorable", "UTF-8"),
    ("UTF-8 BOM", None, b"\xef\xbb\xbf" + _ev(), "unstorable", "BOM"),
]


def test_corpus_decisions_are_total() -> None:
    """Every malformed message yields a dead letter with its reason; nothing raises."""
    topics = Topics("nattillsyn")
    for name, where, payload, label, text in CORPUS:
        device_room = ("r1", "d1") if where is None else (*where.split("/"),)
        room, device = device_room if len(device_room) == 2 else ("r1", device_room[0])
        topic = topics.device("site-1", room, device, TopicKind.event)
        out = decode_for_storage(topics, topic, payload, 65536)
        if label is None:  # NaN is not JSON in our contract's sense: still a dead letter
            assert isinstance(out, DeadLetter), name
            continue
        assert isinstance(out, DeadLetter), (name, out)
        assert reason_label(out.reason) == label, (name, out.reason)
        assert text in out.reason, (name, out.reason)
    good = decode_for_storage(
        topics, topics.device("site-1", "r1", "d1", TopicKind.event), _ev(), 65536
    )
    assert isinstance(good, Record)


async def test_corpus_is_dead_lettered_and_consumer_keeps_going(settings, pool) -> None:
    def dead_count() -> float:
        return sum(
            s.value
            for m in REGISTRY.collect()
            if m.name == "nattillsyn_ingest_dead_letters"
            for s in m.samples
            if s.name.endswith("_total")
        )

    before = dead_count()
    topics = Topics(settings.topic_root)
    async with ingest_with_publisher(settings) as pub:
        good = []
        for i, (_name, where, payload, _label, _text) in enumerate(CORPUS):
            room, device = ("r1", "d1")
            if where is not None:
                room, device = where.split("/") if "/" in where else ("r1", where)
            await pub.publish(topics.device("site-1", room, device, TopicKind.event), payload)
            # A valid message after each bad one: the consumer must still be storing.
            e = motion_event(100 + i)
            good.append(e)
            await pub.publish(topics.device("site-1", "r1", "d1", TopicKind.event), encode(e))
        await _poll(pool, "SELECT count(*) FROM dead_letters", len(CORPUS), timeout=20)
        await _poll(pool, "SELECT count(*) FROM events", len(good), timeout=20)
        dead = await rows(pool, "SELECT topic, reason, size, payload FROM dead_letters ORDER BY id")
        for (name, _where, payload, _label, text), (topic, reason, size, kept) in zip(
            CORPUS, dead, strict=True
        ):
            assert text in reason, (name, reason)
            assert size == len(payload), name
            assert bytes(kept) == payload[:16384], name  # raw bytes, size-capped
            assert topic.startswith(settings.topic_root), name
        assert dead_count() - before == len(CORPUS)
        assert (
            REGISTRY.get_sample_value(
                "nattillsyn_ingest_dead_letters_total", {"reason": "too_large"}
            )
            >= 1
        )


async def test_database_refusal_is_isolated_to_the_one_message(settings, pool) -> None:
    """A message valid by the contract that the database refuses (here a CHECK constraint
    added for the test) goes to the dead letters alone; the rest of its batch is stored."""
    async with pool.connection() as conn:
        await conn.execute(
            "ALTER TABLE events ADD CONSTRAINT refuse_me CHECK (zone IS DISTINCT FROM 'refuse-me')"
        )
    topics = Topics(settings.topic_root)
    async with ingest_with_publisher(settings) as pub:
        t = topics.device("site-1", "r1", "d1", TopicKind.event)
        events = [motion_event(i) for i in range(40)]
        for i, e in enumerate(events):
            pub.publish_nowait(t, encode(e))
            if i == 20:
                pub.publish_nowait(t, _ev(zone="refuse-me"))
        await pub.wait_outstanding_below(1, timeout=10)
        await _poll(pool, "SELECT count(*) FROM events", 40, timeout=20)
        await _poll(pool, "SELECT count(*) FROM dead_letters", 1, timeout=20)
        [(reason,)] = await rows(pool, "SELECT reason FROM dead_letters")
        assert reason.startswith("database rejected") and "refuse_me" in reason, reason


async def test_device_state_follows_source_order_not_arrival(settings, pool) -> None:
    """Late or replayed messages never roll the device row back; a newer session's
    availability wins over an older session's last will."""
    topics = Topics(settings.topic_root)
    async with ingest_with_publisher(settings) as pub:

        def hb(session: int, seq: int, version: str, ts: datetime) -> bytes:
            return encode(
                Heartbeat(
                    site="site-1",
                    room="r1",
                    device="d1",
                    session=session,
                    seq=seq,
                    ts=ts,
                    uptime_s=1,
                    fps=5,
                    agent_version=version,
                )
            )

        def av(session: int, seq: int, state: str) -> bytes:
            return encode(
                Availability(
                    site="site-1", room="r1", device="d1", session=session, seq=seq, state=state
                )
            )

        now = datetime.now(UTC)
        hb_t = topics.device("site-1", "r1", "d1", TopicKind.heartbeat)
        av_t = topics.device("site-1", "r1", "d1", TopicKind.availability)
        await pub.publish(av_t, av(2, 1, "online"))
        await pub.publish(hb_t, hb(2, 5, "0.2.0", now))
        await _poll(pool, "SELECT agent_version FROM devices WHERE id = 'd1'", "0.2.0")
        # An old session's heartbeat and last will arrive late (edge queue replay).
        await pub.publish(hb_t, hb(1, 900, "0.1.0", now.replace(year=now.year - 1)))
        await pub.publish(av_t, av(1, 0, "offline"))
        marker = motion_event(0)
        await pub.publish(topics.device("site-1", "r1", "d1", TopicKind.event), encode(marker))
        await _poll(pool, "SELECT count(*) FROM events", 1)
        row = await rows(
            pool,
            "SELECT agent_version, session, last_seq, availability, availability_session, "
            "health->>'agent_version' FROM devices WHERE id = 'd1'",
        )
        assert row == [("0.2.0", 2, 5, "online", 2, "0.2.0")]
        # Its own session's last will does take it offline (arrival order within a session).
        await pub.publish(av_t, av(2, 0, "offline"))
        await _poll(pool, "SELECT availability FROM devices WHERE id = 'd1'", "offline")


KINDS = (
    TopicKind.event,
    TopicKind.state,
    TopicKind.heartbeat,
    TopicKind.availability,
    TopicKind.config_state,
)


def _random_device_messages(rng: random.Random, n: int) -> list[Record]:
    """Messages of three devices with clashing sessions, sequences and times."""
    topics = Topics("nattillsyn")
    base = datetime(2026, 11, 24, 22, tzinfo=UTC)
    out = []
    for _ in range(n):
        device = f"d{rng.randrange(3)}"
        head = dict(
            site="site-1",
            room=f"r{rng.randrange(2)}",
            device=device,
            session=rng.choice((1, 2, 2, 3)),
            seq=rng.randrange(40),
            ts=base + timedelta(seconds=rng.randrange(600)),
        )
        kind = rng.choice(KINDS)
        if kind is TopicKind.event:
            msg = Event(**head, event_id=uuid.uuid4(), type="motion", phase="new", start=base)
        elif kind is TopicKind.state:
            msg = RoomState(**head, state="in_bed", since=base, confidence=0.9)
        elif kind is TopicKind.heartbeat:
            msg = Heartbeat(
                **head,
                uptime_s=1,
                fps=5,
                agent_version=f"0.{rng.randrange(9)}",
                config_version=rng.randrange(5),
            )
        elif kind is TopicKind.availability:
            msg = Availability(**head, state=rng.choice(("online", "offline")))
        else:
            msg = ConfigState(**head, version=rng.randrange(6))
        topic = topics.device("site-1", head["room"], device, kind)
        rec = decode_message(topics, topic, encode(msg), 65536)
        assert isinstance(rec, Record)
        out.append(rec)
    return out


async def _devices(conn) -> list[tuple]:
    cur = await conn.execute(
        "SELECT id, room_id, session, last_seq, last_seen, last_heartbeat, health, "
        "agent_version, config_version, availability, availability_session, availability_at "
        "FROM devices ORDER BY id"
    )
    return await cur.fetchall()


async def test_deferred_device_summaries_write_what_each_batch_would(pool) -> None:
    """ingest.device_flush_ms: merging the summaries of later batches in memory
    (`DeviceSeen.absorb`) and writing them once gives the same devices rows as writing
    each batch's summaries in turn, whatever the order of sessions and sequences."""
    for trial in range(12):
        rng = random.Random(trial)
        records = _random_device_messages(rng, 120)
        batches, i = [], 0
        while i < len(records):
            size = rng.randint(1, 25)
            batches.append(records[i : i + size])
            i += size
        results = []
        for mode in ("every batch", "merged", "as the service does"):
            pending: dict[tuple[str, str], DeviceSeen] = {}
            async with pool.connection() as conn:
                await conn.execute("DELETE FROM devices")
                for batch in batches:
                    seen = build_rows(batch)[1].values()
                    if mode == "every batch":
                        async with conn.transaction():
                            await write_devices(conn, seen)
                        continue
                    for d in seen:
                        if mode == "as the service does" and d.urgent:
                            async with conn.transaction():
                                await write_devices(conn, [d])
                        elif (d.site, d.device) in pending:
                            pending[(d.site, d.device)].absorb(d)
                        else:
                            pending[(d.site, d.device)] = d
                    if mode == "as the service does" and rng.random() < 0.3:
                        async with conn.transaction():
                            await write_devices(conn, pending.values())
                        pending = {}
                async with conn.transaction():
                    await write_devices(conn, pending.values())
                results.append(await _devices(conn))
        assert results[0] == results[1] == results[2], trial


async def test_a_redelivered_dead_letter_is_kept_once(settings, pool) -> None:
    """The broker sends again what was committed but not acknowledged (a worker killed
    between the two): such a copy (DUP) of a malformed message adds no second row, while
    identical malformed messages that are not redeliveries are each kept."""
    t = f"{settings.topic_root}/site-1/r1/d1/event"
    first = DeadLetter(t, "invalid JSON", b"{broken")
    again = DeadLetter(t, "invalid JSON", b"{broken", redelivered=True)
    other = DeadLetter(t, "invalid JSON", b"{other", redelivered=True)
    async with pool.connection() as conn:
        assert (await write_batch(conn, [], [first])).dead_letters == 1
        assert (await write_batch(conn, [], [again, other])).dead_letters == 1
        assert (await write_batch(conn, [], [first])).dead_letters == 1  # a real repeat
        got = await (
            await conn.execute("SELECT payload, count(*) FROM dead_letters GROUP BY 1 ORDER BY 1")
        ).fetchall()
    assert got == [(b"{broken", 2), (b"{other", 1)]
