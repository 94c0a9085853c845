"""The MQTT transport (nattillsyn.mqtt) against a real Mosquitto and, for faults no
real broker makes, a scripted broker written without paho (tests/mqtt_wire.py)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mqtt_wire import (
    DISCONNECT,
    PUBACK,
    PUBLISH,
    ScriptedBroker,
    packet,
    publish_packet,
)

from nattillsyn.clock import ManualClock
from nattillsyn.mqtt import MqttClient, MqttUnrouted, Received
from nattillsyn.mqtt import client as client_module

ROOT = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def started(*clients: MqttClient) -> AsyncIterator[tuple[MqttClient, ...]]:
    """The clients started; stopped again afterwards."""
    for c in clients:
        await c.start()
    try:
        yield clients
    finally:
        for c in reversed(clients):
            await c.stop()


def test_no_module_but_the_transport_imports_paho() -> None:
    """A paho release can change its internals: only the transport (nattillsyn/mqtt/) may
    depend on it."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0].startswith(".") or rel.parts[0] in ("node_modules", "build"):
            continue
        if rel.parent == Path("nattillsyn/mqtt"):
            continue
        if re.search(r"^\s*(import paho|from paho)", path.read_text(), re.M):
            offenders.append(str(rel))
    assert offenders == []


def test_the_transport_uses_no_private_paho_member() -> None:
    """Public paho API only (but in the fast path): no `_name` attribute of a paho object
    or module."""
    transport = sorted((ROOT / "nattillsyn/mqtt").glob("*.py"))
    assert {p.name for p in transport} >= {"client.py", "connection.py", "fastpath.py"}
    for path in transport:
        if path.name != "fastpath.py":
            src = path.read_text()
            assert not re.findall(r"(?:paho|_client|\bc|client|message)\._[a-z]", src), path


async def test_undefined_puback_reason_is_a_protocol_error_and_a_reconnect() -> None:
    """PUBACK `40 03 00 07 05` (reason 5 is not defined): reported, the connection made
    again, the publish sent again (DUP) and confirmed; nothing stops silently."""

    async def script(conn, cmd, body):
        if cmd & 0xF0 == PUBLISH and (cmd >> 1) & 3 == 1:
            mid = body[2 + struct.unpack("!H", body[:2])[0] :][:2]
            if conn.number == 1:
                await conn.send(packet(PUBACK, mid + b"\x05"))
            else:
                await conn.send(packet(PUBACK, mid))

    async with scripted_client(script, "undefined-reason") as (broker, client):
        for _ in range(6):  # QoS 0 takes packet ids too: the QoS 1 publish gets id 7
            await client.publish("t/x", b"q0", qos=0)
        await client.publish("t/x", b"q1", qos=1, timeout=20)
        assert client.protocol_errors == 1
        assert client.connects == 2
        first, second = broker.connections[0], broker.connections[1]
        assert packet(PUBACK, b"\x00\x07\x05") == bytes.fromhex("4003000705")
        q1 = [b for c, b in first.packets if c & 0xF0 == PUBLISH and c & 0x06]
        assert q1[0][5:7] == b"\x00\x07"  # so the broker answered exactly 40 03 00 07 05
        again = [(c, b) for c, b in second.packets if c & 0xF0 == PUBLISH]
        assert again[0][0] & 0x08, "sent again with DUP"
        assert again[0][1].endswith(b"q1")
        assert client.outstanding == 0


async def test_an_exception_on_the_read_path_is_a_protocol_error_and_a_reconnect(
    monkeypatch,
) -> None:
    """Whatever raises while a packet is handled (here: the hand-over to the event
    loop, once) drops the connection and makes it again; the message comes again."""
    real, calls = client_module.Received, []

    def failing_once(*args):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("injected")
        return real(*args)

    monkeypatch.setattr(client_module, "Received", failing_once)

    async def script(conn, cmd, body):
        if cmd & 0xF0 == 0x80:
            await conn.send(publish_packet("t/x", b"again", qos=1, mid=3, dup=conn.number > 1))

    async with scripted_client(script, "read-path", manual_ack=True) as (broker, client):
        await client.subscribe("t/#")
        msg = await client.next_message(timeout=20)
        assert (msg.payload, msg.dup) == (b"again", True)
        assert client.protocol_errors == 1 and client.connects == 2
        assert broker.connections[0].packets[-1] == (DISCONNECT, b"\x82")


async def test_broker_closing_mid_packet_is_a_reconnect_and_nothing_is_half_delivered() -> None:
    whole = publish_packet("t/half", b"x" * 300, qos=1, mid=9)

    async def script(conn, cmd, body):
        if cmd & 0xF0 == 0x80:  # after SUBACK
            if conn.number == 1:
                await conn.send(whole[:150])
                conn.close()
            else:
                await conn.send(whole)

    async with scripted_client(script, "mid-packet", manual_ack=True) as (broker, client):
        await client.subscribe("t/#")
        msg = await client.next_message(timeout=20)
        assert (msg.topic, msg.payload, msg.mid) == ("t/half", b"x" * 300, 9)
        assert client.connects == 2 and client.backlog == 0
        assert client.ack_many([msg]) == 1
        await client.flush()
        await broker.wait(lambda: any(c == PUBACK for c, _ in broker.connections[1].packets))


async def test_qos2_flow_both_ways(mqtt_url: str, topic_root: str) -> None:
    """QoS 2: PUBLISH/PUBREC/PUBREL/PUBCOMP completes for the publisher, the subscriber
    gets each message once and acknowledges it by hand."""
    async with started(
        MqttClient(mqtt_url, f"q2s-{uuid.uuid4().hex[:8]}", manual_ack=True),
        MqttClient(mqtt_url, f"q2p-{uuid.uuid4().hex[:8]}"),
    ) as (sub, pub):
        await sub.subscribe(f"{topic_root}/q2", qos=2)
        for i in range(3):
            await pub.publish(f"{topic_root}/q2", str(i).encode(), qos=2, timeout=10)
            got = await sub.next_message(timeout=10)
            assert (got.payload, got.qos) == (str(i).encode(), 2)
            assert sub.ack_many([got]) == 1
        assert pub.outstanding == 0
        with pytest.raises(TimeoutError):
            await sub.next_message(timeout=0.3)


async def test_stop_while_the_broker_is_unreachable_fails_waiting_publishes() -> None:
    async with ScriptedBroker(lambda *a: asyncio.sleep(0)) as broker:
        client = MqttClient(broker.url, "unreachable")
        await client.start()
    # The broker is gone: the client tries again in the background.
    waiting = asyncio.create_task(client.publish("t/x", b"kept", timeout=None))
    await asyncio.sleep(0)
    assert client.outstanding == 1
    await client.stop()
    with pytest.raises(Exception, match="stopped"):
        await waiting


@contextlib.asynccontextmanager
async def reconnecting_at_once() -> AsyncIterator[ManualClock]:
    """A clock for a client that moves past its reconnect back-off as soon as it waits on
    it: the test sees the reconnect without waiting for the timer."""
    clock = ManualClock()

    async def advance() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await clock.until_sleeping(1, timeout=60)
                await clock.advance(15.0)  # the longest back-off

    task = asyncio.create_task(advance())
    try:
        yield clock
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def scripted_client(
    script, client_id: str, **options: Any
) -> AsyncIterator[tuple[ScriptedBroker, MqttClient]]:
    """A scripted broker and a started client of it, past reconnect back-offs at once."""
    async with (
        ScriptedBroker(script) as broker,
        reconnecting_at_once() as clock,
        started(MqttClient(broker.url, client_id, clock=clock, **options)) as (client,),
    ):
        yield broker, client


@contextlib.asynccontextmanager
async def numbered_backlog(
    mqtt_url: str, topic_root: str, n: int, receive_maximum: int
) -> AsyncIterator[MqttClient]:
    """A manual-ack subscriber with that receive maximum, and `n` messages "0", "1", … that
    the broker confirmed to the publisher, to be delivered to it."""
    async with started(
        MqttClient(
            mqtt_url,
            f"backlog-{uuid.uuid4().hex[:8]}",
            manual_ack=True,
            receive_maximum=receive_maximum,
        ),
        MqttClient(mqtt_url, f"pub-{uuid.uuid4().hex[:8]}"),
    ) as (sub, pub):
        await sub.subscribe(f"{topic_root}/#", qos=1)
        for i in range(n):
            pub.publish_nowait(f"{topic_root}/x", str(i).encode())
        await pub.wait_outstanding_below(1, timeout=10)
        yield sub


async def test_next_batch_is_bounded_by_size_and_time(mqtt_url: str, topic_root: str) -> None:
    async with numbered_backlog(mqtt_url, topic_root, 120, receive_maximum=50) as sub:
        seen: list[int] = []
        while len(seen) < 120:
            batch = await asyncio.wait_for(sub.next_batch(30, 0.05), 10)
            assert 1 <= len(batch) <= 30
            seen += [int(m.payload) for m in batch]
            # Acknowledged after "commit": the broker then sends more (receive maximum 50).
            assert sub.ack_many(batch) == len(batch)
        assert seen == list(range(120))
        with pytest.raises(TimeoutError):
            await sub.next_message(timeout=0.2)


async def test_unacknowledged_messages_come_back_after_a_reconnect(
    mqtt_url: str, topic_root: str
) -> None:
    """Manual ack after commit: what was not acknowledged is redelivered on the resumed
    session, and an ack for a delivery of the lost connection is never sent."""
    cid = f"redeliver-{uuid.uuid4().hex[:8]}"
    async with reconnecting_at_once() as clock:
        await _redelivered_after_reconnect(mqtt_url, topic_root, cid, clock)


async def _redelivered_after_reconnect(
    mqtt_url: str, topic_root: str, cid: str, clock: ManualClock
) -> None:
    sub = MqttClient(
        mqtt_url,
        cid,
        manual_ack=True,
        clean_start=False,
        session_expiry_s=300,
        receive_maximum=100,
        clock=clock,
    )
    pub = MqttClient(mqtt_url, f"pub-{uuid.uuid4().hex[:8]}")
    await sub.start()
    await pub.start()
    try:
        await sub.subscribe(f"{topic_root}/#", qos=1)
        for i in range(10):
            await pub.publish(f"{topic_root}/x", str(i).encode())
        batch: list[Received] = []
        while len(batch) < 10:
            batch += await sub.next_batch(10 - len(batch), 1.0)
        assert sub.ack_many(batch[:4]) == 4  # "committed" the first four only
        await sub.flush(2.0)
        sub.drop_connection()  # the connection drops
        again: list[Received] = []
        while len(again) < 6:
            again += await asyncio.wait_for(sub.next_batch(10, 0.5), 15)
        assert sorted(int(m.payload) for m in again) == [4, 5, 6, 7, 8, 9]
        assert all(m.dup for m in again)
        assert sub.connects == 2
        assert sub.ack_many(batch[4:]) == 0
        assert sub.ack_many(again) == 6
    finally:
        await pub.stop()
        await sub.stop()
        cleaner = MqttClient(mqtt_url, cid, clean_start=True)
        await cleaner.start()
        await cleaner.stop()


async def test_unrouted_publish_is_sent_again_until_a_subscriber_takes_it(
    mqtt_url: str, topic_root: str
) -> None:
    """MQTT 5 "no matching subscribers" (as after a broker restart, before the shared
    subscribers are back): with retry_unrouted the publisher keeps the message."""
    clock = ManualClock()
    async with started(
        MqttClient(mqtt_url, f"pub-{uuid.uuid4().hex[:8]}", retry_unrouted=True, clock=clock),
        MqttClient(mqtt_url, f"sub-{uuid.uuid4().hex[:8]}"),
    ) as (pub, sub):
        pub.publish_nowait(f"{topic_root}/late", b"kept")
        waiting = asyncio.create_task(pub.publish(f"{topic_root}/late", b"awaited", timeout=20))
        # Nobody subscribes yet: both stay outstanding instead of being lost, each waiting
        # to be sent again.
        await clock.until_sleeping(2)
        assert pub.outstanding == 2 and pub.unrouted == 2 and not waiting.done()
        await sub.subscribe(f"$share/g/{topic_root}/#", qos=1)
        await clock.advance(0.25)  # the first re-send
        got = {(await sub.next_message(timeout=10)).payload for _ in range(2)}
        assert got == {b"kept", b"awaited"}
        await asyncio.wait_for(waiting, 10)
        await pub.wait_outstanding_below(1, timeout=5)


async def test_require_subscriber_reports_unrouted_to_the_caller(
    mqtt_url: str, topic_root: str
) -> None:
    """The edge keeps an event on disk until a subscriber took it: an unrouted PUBACK is an
    error for that publish only; other publishes to the same topic stay plain successes."""
    topic = f"{topic_root}/needs-reader"
    async with started(
        MqttClient(mqtt_url, f"pub-{uuid.uuid4().hex[:8]}"),
        MqttClient(mqtt_url, f"sub-{uuid.uuid4().hex[:8]}"),
    ) as (pub, sub):
        with pytest.raises(MqttUnrouted):
            await pub.publish(topic, b"x", require_subscriber=True, timeout=10)
        await pub.publish(topic, b"y", timeout=10)  # nobody asked: fine
        await sub.subscribe(topic, qos=1)
        await pub.publish(topic, b"z", require_subscriber=True, timeout=10)
        assert (await sub.next_message(timeout=10)).payload == b"z"


async def test_in_flight_is_bounded_by_receive_maximum(mqtt_url: str, topic_root: str) -> None:
    """The broker delivers no more unacknowledged messages than the receive maximum: a
    worker that cannot commit holds a bounded batch, the rest waits in the broker."""
    async with numbered_backlog(mqtt_url, topic_root, 60, receive_maximum=20) as sub:
        held = [await sub.next_message(timeout=5) for _ in range(20)]
        with pytest.raises(TimeoutError):
            await sub.next_message(timeout=0.5)
        sub.ack_many(held)
        rest = []
        while len(rest) < 40:
            batch = await asyncio.wait_for(sub.next_batch(40, 0.05), 10)
            sub.ack_many(batch)
            rest += batch
        assert [int(m.payload) for m in held + rest] == list(range(60))
