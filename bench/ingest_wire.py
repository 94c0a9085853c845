"""MQTT 5 over a plain socket, for the ingest benchmark's own publishers and ceiling
consumers: it shares no code with the project's transport (nattillsyn.mqtt, paho), so
the ceiling it measures and the load it offers do not depend on what is measured.

Only what the benchmark needs: CONNECT (clean start or resumed session, session expiry,
receive maximum), SUBSCRIBE, PUBLISH QoS 0/1 (with the DUP flag for resends), PUBACK,
PINGREQ, DISCONNECT, and a stream parser over a receive buffer.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 0x82, 0x90, 0xC0, 0xD0, 0xE0
DUP = 0x08
NO_MATCHING_SUBSCRIBERS = 0x10  # PUBACK reason code: accepted, but nobody took it

# MQTT 5 property identifiers used here
P_SESSION_EXPIRY = 0x11
P_RECEIVE_MAXIMUM = 0x21


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def utf8(s: str | bytes) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(data)) + data


def connect_packet(
    client_id: str, *, clean_start: bool, session_expiry: int, receive_maximum: int, keepalive=60
) -> bytes:
    props = bytes([P_SESSION_EXPIRY]) + struct.pack("!I", session_expiry)
    props += bytes([P_RECEIVE_MAXIMUM]) + struct.pack("!H", receive_maximum)
    body = utf8("MQTT") + bytes([5, 0x02 if clean_start else 0x00])
    body += struct.pack("!H", keepalive) + varint(len(props)) + props + utf8(client_id)
    return packet(CONNECT, body)


def subscribe_packet(mid: int, topic_filter: str, qos: int = 1) -> bytes:
    body = struct.pack("!H", mid) + b"\x00" + utf8(topic_filter) + bytes([qos])
    return packet(SUBSCRIBE, body)


def publish_packet(topic: bytes, payload: bytes, mid: int, qos: int = 1) -> bytes:
    """PUBLISH with an empty property block; the DUP flag is set on the first byte later."""
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    return packet(PUBLISH | (qos << 1), body + b"\x00" + payload)


def puback(mid: int) -> bytes:
    # MQTT 5: reason code 0 and no properties may be left out (remaining length 2).
    return b"\x40\x02" + struct.pack("!H", mid)


PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


def parse(buf: bytearray) -> tuple[list[tuple[int, int, int]], int]:
    """Complete packets at the start of `buf` as (first byte, body start, body end) and
    how many bytes they took (the caller deletes those from `buf` when done)."""
    out = []
    pos, end = 0, len(buf)
    while pos + 2 <= end:
        length = shift = 0
        i = pos + 1
        while True:
            if i >= end:
                return out, pos
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        if i + length > end:
            break
        out.append((buf[pos], i, i + length))
        pos = i + length
    return out, pos


def properties(body: bytes | bytearray, at: int) -> tuple[dict[int, int], int]:
    """The integer properties of a property block at `at` (others skipped) and its end."""
    length = shift = 0
    while True:
        byte = body[at]
        at += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    end = at + length
    out: dict[int, int] = {}
    sizes = {0x01: 1, 0x02: 4, 0x11: 4, 0x13: 2, 0x21: 2, 0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1}
    sizes |= {0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1}
    while at < end:
        pid = body[at]
        at += 1
        if pid in sizes:
            n = sizes[pid]
            out[pid] = int.from_bytes(bytes(body[at : at + n]), "big")
            at += n
        elif pid == 0x26:  # user property: two strings
            for _ in range(2):
                at += 2 + int.from_bytes(bytes(body[at : at + 2]), "big")
        elif pid == 0x0B:  # subscription identifier: varint
            while body[at] & 0x80:
                at += 1
            at += 1
        else:  # a string or binary property
            at += 2 + int.from_bytes(bytes(body[at : at + 2]), "big")
    return out, end


@dataclass
class Connack:
    session_present: bool
    reason: int
    receive_maximum: int  # how many QoS 1 publishes the broker takes unacknowledged


def host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[-1].split("?", 1)[0].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host or "127.0.0.1", int(port or 1883)


def connect(
    url: str,
    client_id: str,
    *,
    clean_start: bool = True,
    session_expiry: int = 0,
    receive_maximum: int = 65535,
    timeout: float = 5.0,
) -> tuple[socket.socket, Connack, bytearray]:
    """A connected socket, the CONNACK, and what followed it in the same reads."""
    sock = socket.create_connection(host_port(url), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        connect_packet(
            client_id,
            clean_start=clean_start,
            session_expiry=session_expiry,
            receive_maximum=receive_maximum,
        )
    )
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        packets, _used = parse(buf)
        if packets:
            break
        if time.monotonic() > deadline:
            sock.close()
            raise TimeoutError("no CONNACK")
        chunk = sock.recv(65536)
        if not chunk:
            sock.close()
            raise ConnectionError("closed before CONNACK")
        buf += chunk
    first, start, stop = packets[0]
    body = bytes(buf[start:stop])
    if first != CONNACK:
        sock.close()
        raise ConnectionError(f"expected CONNACK, got {first:#x}")
    props, _end = properties(body, 2)
    ack = Connack(bool(body[0] & 1), body[1], props.get(P_RECEIVE_MAXIMUM, 65535))
    rest = bytearray(buf[stop:])
    if ack.reason != 0:
        sock.close()
        raise ConnectionError(f"CONNACK reason {ack.reason:#x}")
    return sock, ack, rest


def subscribe(sock: socket.socket, buf: bytearray, topic_filter: str, timeout: float = 5.0) -> None:
    """SUBSCRIBE at QoS 1 and wait for its SUBACK (anything else before it is kept)."""
    sock.sendall(subscribe_packet(1, topic_filter))
    deadline = time.monotonic() + timeout
    while True:
        packets, _used = parse(buf)
        for first, start, stop in packets:
            if first == SUBACK:
                _props, at = properties(buf, start + 2)
                if buf[at] > 1:
                    raise ConnectionError(f"subscription refused: {buf[at]:#x}")
                del buf[:stop]  # what came after it stays for the caller
                return
        if time.monotonic() > deadline:
            raise TimeoutError("no SUBACK")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before SUBACK")
        buf += chunk
