"""The lean MQTT receive path decodes exactly as paho does; batching and acks are bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from nattillsyn.mqtt import MqttClient, MqttUnrouted, Received, _BufferedSocket


def _publish_packet(
    topic: bytes, payload: bytes, qos: int, mid: int, v5: bool, props: Properties | None = None
) -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    if v5:
        body += props.pack() if props is not None else b"\x00"
    return body + payload


def _corpus(v5: bool):
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 60
    props.UserProperty = ("k", "v")
    topics = [b"a/b/c", b"nattillsyn/site-1/rum-101/cam-101/event", "åäö/ü".encode()]
    payloads = [b"", b"{}", b'{"v":1}', bytes(range(256)), b"x" * 70_000]
    for topic in topics:
        for payload in payloads:
            for qos in (0, 1):
                for flags in (0, 0x01, 0x08 if qos else 0):
                    yield topic, payload, qos, 17 + qos, flags, None
    if v5:
        yield b"a/b", b"with properties", 1, 5, 0, props
    yield b"bad\xff/utf8", b"payload", 1, 9, 0, None  # invalid UTF-8 topic: paho's path


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_lean_publish_decoding_matches_paho(v5: bool) -> None:
    url = "mqtt://127.0.0.1:1" + ("" if v5 else "?protocol=3.1.1")
    client = MqttClient(url, "decode-test")
    protocol = paho.MQTTv5 if v5 else paho.MQTTv311
    for topic, payload, qos, mid, flags, props in _corpus(v5):
        cmd = paho.PUBLISH | (qos << 1) | flags
        packet = bytearray(_publish_packet(topic, payload, qos, mid, v5, props))
        ref = _packet.decode_publish(cmd, bytes(packet), protocol)
        client._client._in_packet = {"command": cmd, "packet": packet, "pos": 0}
        client._client._manual_ack = True  # no PUBACK to a socket that does not exist
        client._client._handle_publish()
        got: Received = client._inbox.pop()
        try:
            want_topic = ref.topic.decode("utf-8")
        except UnicodeDecodeError:
            want_topic = None
        if want_topic is not None:
            assert got.topic == want_topic
        assert got.payload == ref.payload
        assert got.qos == ref.qos
        assert got.retain == ref.retain
        assert got.dup == ref.dup
        assert got.mid == ref.mid
        if props is not None:
            assert got.properties is not None
            assert got.properties.MessageExpiryInterval == 60
    assert not client._inbox


class _FakeSock:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def recv(self, n: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        return self.chunks.pop(0)


def test_buffered_socket_serves_exact_reads_and_reports_pending() -> None:
    data = bytes(range(200)) * 500
    sock = _BufferedSocket(_FakeSock([data[:70_000], data[70_000:]]))
    out = b""
    sizes = [1, 1, 3, 1000, 65_536, 1, 20_000, 13_457]
    for n in sizes:
        out += sock.recv(n)
    assert out == data[: len(out)]
    assert sock.pending() == len(data) - len(out)  # both chunks read, the rest buffered
    rest = b""
    with pytest.raises(BlockingIOError):
        while True:
            rest += sock.recv(4096)
    assert out + rest == data
    assert sock.pending() == 0


async def test_next_batch_is_bounded_by_size_and_time(mqtt_url: str, topic_root: str) -> None:
    sub = MqttClient(mqtt_url, f"batch-{uuid.uuid4().hex[:8]}", manual_ack=True, receive_maximum=50)
    pub = MqttClient(mqtt_url, f"pub-{uuid.uuid4().hex[:8]}")
    await sub.start()
    await pub.start()
    try:
        await sub.subscribe(f"{topic_root}/#", qos=1)
        for i in range(120):
            pub.publish_nowait(f"{topic_root}/x", str(i).encode())
        await pub.wait_outstanding_below(1, timeout=10)
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
    finally:
        await pub.stop()
        await sub.stop()


async def test_unacknowledged_messages_come_back_after_a_reconnect(
    mqtt_url: str, topic_root: str
) -> None:
    """Manual ack after commit: what was not acknowledged is redelivered on the resumed
    session, and an ack for a delivery of the lost connection is never sent."""
    cid = f"redeliver-{uuid.uuid4().hex[:8]}"
    sub = MqttClient(
        mqtt_url, cid, manual_ack=True, clean_start=False, session_expiry_s=300, receive_maximum=100
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
        await sub._flush(2.0)
        sub._client._sock.shutdown(socket.SHUT_RDWR)  # the connection drops
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
    pub = MqttClient(mqtt_url, f"pub-{uuid.uuid4().hex[:8]}", retry_unrouted=True)
    sub = MqttClient(mqtt_url, f"sub-{uuid.uuid4().hex[:8]}")
    await pub.start()
    await sub.start()
    try:
        pub.publish_nowait(f"{topic_root}/late", b"kept")
        waiting = asyncio.create_task(pub.publish(f"{topic_root}/late", b"awaited", timeout=20))
        # Nobody subscribes yet: both stay outstanding instead of being lost.
        for _ in range(100):
            if pub.outstanding == 2 and pub._unrouted:
                break
            await asyncio.sleep(0.02)
        assert pub.outstanding == 2 and not waiting.done()
        await sub.subscribe(f"$share/g/{topic_root}/#", qos=1)
        got = {(await sub.next_message(timeout=10)).payload for _ in range(2)}
        assert got == {b"kept", b"awaited"}
        await asyncio.wait_for(waiting, 10)
        await pub.wait_outstanding_below(1, timeout=5)
    finally:
        await pub.stop()
        await sub.stop()


async def test_require_subscriber_reports_unrouted_to_the_caller(
    mqtt_url: str, topic_root: str
) -> None:
    """The edge keeps an event on disk until a subscriber took it: an unrouted PUBACK is an
    error for that publish only; other publishes to the same topic stay plain successes."""
    pub = MqttClient(mqtt_url, f"pub-{uuid.uuid4().hex[:8]}")
    sub = MqttClient(mqtt_url, f"sub-{uuid.uuid4().hex[:8]}")
    await pub.start()
    await sub.start()
    topic = f"{topic_root}/needs-reader"
    try:
        with pytest.raises(MqttUnrouted):
            await pub.publish(topic, b"x", require_subscriber=True, timeout=10)
        await pub.publish(topic, b"y", timeout=10)  # nobody asked: fine
        await sub.subscribe(topic, qos=1)
        await pub.publish(topic, b"z", require_subscriber=True, timeout=10)
        assert (await sub.next_message(timeout=10)).payload == b"z"
    finally:
        await pub.stop()
        await sub.stop()


def _fixed(cmd: int, body: bytes) -> bytes:
    """A packet: fixed header with the remaining length (1-4 bytes of 7 bits), then body."""
    n, length = len(body), bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        length.append(byte | (0x80 if n else 0))
        if not n:
            return bytes([cmd]) + bytes(length) + body


class _StreamSock:
    """A non-blocking socket fed by the test: recv takes at most n of what was fed."""

    def __init__(self) -> None:
        self.data = bytearray()

    def recv(self, n: int) -> bytes:
        if not self.data:
            raise BlockingIOError
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    def pending(self) -> int:
        return 0

    def close(self) -> None:
        pass


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
@pytest.mark.parametrize("split", [1, 2, 3, 7, 61, 1000, 65_536, 0], ids=lambda s: f"split{s}")
def test_stream_reader_takes_packets_at_any_split(v5: bool, split: int) -> None:
    """Publishes, PUBACKs and other packets in one stream, cut anywhere: every message
    arrives once, in order, as paho decodes it; every PUBACK confirms its publish."""
    url = "mqtt://127.0.0.1:1" + ("" if v5 else "?protocol=3.1.1")
    protocol = paho.MQTTv5 if v5 else paho.MQTTv311
    client = MqttClient(url, "stream-test", manual_ack=True)
    c = client._client
    confirmed: list[int] = []
    c.on_publish = lambda cl, u, mid, rc, props: confirmed.append(mid)
    sock = _StreamSock()
    c._sock = _BufferedSocket(sock)
    stream, want, acks = bytearray(), [], []
    for n, (topic, payload, qos, mid, flags, props) in enumerate(_corpus(v5)):
        cmd = paho.PUBLISH | (qos << 1) | flags
        body = _publish_packet(topic, payload, qos, mid, v5, props)
        stream += _fixed(cmd, body)
        want.append(_packet.decode_publish(cmd, body, protocol))
        if n % 5 == 0:
            out = 1000 + n
            c._out_messages[out] = paho.MQTTMessage(out)
            c._out_messages[out].qos = 1
            c._inflight_messages += 1
            acks.append(out)
            stream += _fixed(
                paho.PUBACK, struct.pack("!H", out) + (b"\x00" if v5 and n % 2 else b"")
            )
        if n % 7 == 0:
            stream += _fixed(paho.PINGRESP, b"")
    pieces = (
        [stream] if split == 0 else [stream[i : i + split] for i in range(0, len(stream), split)]
    )
    for piece in pieces:
        sock.data += piece
        assert c.loop_read() == paho.MQTT_ERR_SUCCESS
    assert not sock.data and c._sock.pending() == 0
    got = list(client._inbox)
    assert len(got) == len(want)
    for g, ref in zip(got, want, strict=True):
        with contextlib.suppress(UnicodeDecodeError):  # not UTF-8: paho's path, str topic
            assert g.topic == ref.topic.decode("utf-8")
        assert (g.payload, g.qos, g.retain, g.dup, g.mid) == (
            ref.payload,
            ref.qos,
            ref.retain,
            ref.dup,
            ref.mid,
        )
    assert confirmed == acks and not c._out_messages


@pytest.mark.parametrize(
    "data",
    [
        b"\x32\xff\xff\xff\xff\x01abc",  # remaining length of five bytes
        b"\x32\x05\x00\x09ab\x00\x01",  # topic longer than the packet
        b"\x32\x03\x00\x01a",  # QoS 1 without a packet id
    ],
)
def test_stream_reader_refuses_malformed_packets_as_paho_does(data: bytes) -> None:
    client = MqttClient("mqtt://127.0.0.1:1", "malformed-test", manual_ack=True)
    c = client._client
    sock = _StreamSock()
    sock.data += data
    c._sock = _BufferedSocket(sock)
    c._state = paho._ConnectionState.MQTT_CS_CONNECTED
    assert c.loop_read() == paho.MQTT_ERR_PROTOCOL
    assert not client._inbox


def test_stream_reader_reports_a_closed_connection() -> None:
    client = MqttClient("mqtt://127.0.0.1:1", "eof-test", manual_ack=True)
    c = client._client

    class Closed(_StreamSock):
        def recv(self, n: int) -> bytes:
            return b""

    c._sock = _BufferedSocket(Closed())
    c._state = paho._ConnectionState.MQTT_CS_CONNECTED
    assert c.loop_read() == paho.MQTT_ERR_CONN_LOST


@pytest.mark.parametrize("body", [b"\x00\x07", b"\x00\x07\x00", b"\x12\x34\x10", b"\xff\xff\x80"])
def test_lean_puback_decoding_matches_paho(body: bytes) -> None:
    client = MqttClient("mqtt://127.0.0.1:1", "puback-test")
    seen: list[tuple[int, int]] = []
    client._client.on_publish = lambda c, u, mid, rc, props: seen.append((mid, rc.value))
    ref = _packet.decode_puback(paho.PUBACK, body, paho.MQTTv5)
    client._client._out_messages[ref.mid] = paho.MQTTMessage(ref.mid)
    client._client._in_packet = {"command": paho.PUBACK, "packet": bytearray(body), "pos": 0}
    client._client._handle_pubackcomp("PUBACK")
    assert seen == [(ref.mid, ref.reason.value)]


async def test_in_flight_is_bounded_by_receive_maximum(mqtt_url: str, topic_root: str) -> None:
    """The broker delivers no more unacknowledged messages than the receive maximum: a
    worker that cannot commit holds a bounded batch, the rest waits in the broker."""
    sub = MqttClient(mqtt_url, f"bound-{uuid.uuid4().hex[:8]}", manual_ack=True, receive_maximum=20)
    pub = MqttClient(mqtt_url, f"pub-{uuid.uuid4().hex[:8]}")
    await sub.start()
    await pub.start()
    try:
        await sub.subscribe(f"{topic_root}/#", qos=1)
        for i in range(60):
            pub.publish_nowait(f"{topic_root}/x", str(i).encode())
        await pub.wait_outstanding_below(1, timeout=10)
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
    finally:
        await pub.stop()
        await sub.stop()
