"""The fast reader (nattillsyn/mqtt/fastpath.py) against paho's own: the same byte
stream, cut anywhere, gives the same messages through both."""

from __future__ import annotations

import struct
import uuid

import pytest
from mqtt_wire import PUBACK, SUBSCRIBE, ScriptedBroker, packet, publish_packet

from nattillsyn.mqtt import MqttClient, fastpath

PINGRESP = 0xD0


def _stream(v5: bool) -> tuple[bytes, int]:
    """PUBLISH packets of every common and uncommon form, with other packets between."""
    props = b"\x05\x02\x00\x00\x00\x3c" if v5 else None  # message expiry 60 s
    plain = b"\x00" if v5 else None
    topics = ["a/b/c", "nattillsyn/site-1/rum-101/cam-101/event", "åäö/ü"]
    payloads = [b"", b"{}", b'{"v":1}', bytes(range(256)), b"x" * 70_000]
    out, n, mid = bytearray(), 0, 0
    for topic in topics:
        for payload in payloads:
            for qos in (0, 1):
                for dup, retain in ((False, False), (False, True), (qos == 1, False)):
                    mid += qos
                    out += publish_packet(topic, payload, qos, mid, dup, retain, plain)
                    n += 1
        mid += 1
        out += publish_packet(topic, b"with properties", 1, mid, properties=props or plain)
        out += packet(PINGRESP, b"")
        n += 1
    mid += 1
    out += publish_packet(b"bad\xff/utf8", b"payload", 1, mid, properties=plain)  # paho's path
    return bytes(out), n + 1


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
@pytest.mark.parametrize("split", [1, 3, 7, 61, 1000, 65_536, 0], ids=lambda s: f"split{s}")
async def test_fast_reader_delivers_what_paho_delivers(v5: bool, split: int) -> None:
    assert fastpath.AVAILABLE, "this paho release lacks what the fast reader needs"
    stream, count = _stream(v5)

    async def script(conn, cmd, body):
        if cmd & 0xF0 == SUBSCRIBE:
            step = split or len(stream)
            for i in range(0, len(stream), step):
                await conn.send(stream[i : i + step])

    got = {}
    for fast in (True, False):
        async with ScriptedBroker(script) as broker:
            url = broker.url + ("" if v5 else "?protocol=3.1.1")
            client = MqttClient(url, f"fp-{uuid.uuid4().hex[:6]}", manual_ack=fast)
            assert isinstance(client._client, fastpath.FastClient) is fast
            await client.start()
            try:
                await client.subscribe("#")
                msgs = [await client.next_message(timeout=20) for _ in range(count)]
                assert client.backlog == 0 and client.connects == 1
                if fast:  # both kinds of acknowledgement put the same bytes on the wire
                    conn = broker.connections[0]
                    q1 = [m for m in msgs if m.qos == 1]
                    assert client.ack_many(q1[:20]) == 20
                    for m in q1[20:]:
                        client._client.ack(m.mid, 1)
                    want = len(q1)
                    await broker.wait(
                        lambda c=conn, n=want: sum(k == PUBACK for k, _ in c.packets) == n
                    )
                    acks = [body for c, body in conn.packets if c == PUBACK]
                    assert acks == [struct.pack("!H", m.mid) for m in q1]
            finally:
                await client.stop()
        got[fast] = [(m.topic, m.payload, m.qos, m.retain, m.mid, m.dup) for m in msgs]
    assert got[True] == got[False]
    assert got[True][-1][0] == "\ufffd"  # an invalid topic still arrives (as a dead letter)


async def test_without_the_internals_a_manual_ack_client_is_stock_paho(
    monkeypatch, mqtt_url: str, topic_root: str
) -> None:
    """Another paho release: slower, still correct."""
    monkeypatch.setattr(fastpath, "AVAILABLE", False)
    sub = MqttClient(mqtt_url, f"stock-{uuid.uuid4().hex[:6]}", manual_ack=True)
    pub = MqttClient(mqtt_url, f"pub-{uuid.uuid4().hex[:6]}")
    assert not isinstance(sub._client, fastpath.FastClient)
    await sub.start()
    await pub.start()
    try:
        await sub.subscribe(f"{topic_root}/#")
        await pub.publish(f"{topic_root}/x", b"1")
        msg = await sub.next_message(timeout=10)
        assert msg.payload == b"1" and sub.ack_many([msg]) == 1
    finally:
        await pub.stop()
        await sub.stop()
