"""The one place that touches paho internals: a reader for the common received packet.

For every packet stock paho makes three recv() calls and builds an MQTTMessage (with a
threading.Condition) and a Properties object: 35 µs of CPU a message here, against
5 µs for this reader (bench/RESULTS.md, 2026-12-04). The ingest workers receive every
message of every room, so manual-ack clients use it; every other client is stock paho.

It reads the socket in 64 KB chunks and, at packet boundaries, takes complete PUBLISH
packets (QoS 0/1, no properties, a topic rather than an alias) straight from the
buffer. Any other or incomplete packet is left to paho's own reader, which reads the
same buffer. Acknowledgements of a batch are queued as one write (`ack_many`): paho
writes each PUBACK with its own send().

paho internals used: `Client._create_socket` (wrapped), `Client._sock`,
`Client._in_packet["command"]` (0 between packets) and `Client._packet_queue`. `AVAILABLE` is False when a paho
release lacks them; the transport then uses stock paho, slower and still correct.
"""

from __future__ import annotations

import enum
import inspect
import ssl
import struct
from collections.abc import Callable

import paho.mqtt.client as paho

_CHUNK = 1 << 16

# topic, payload, qos, retain, mid, dup
Deliver = Callable[[str, bytes, int, bool, int, bool], None]


class Step(enum.Enum):
    EMPTY = 0  # nothing buffered and nothing to read now
    TAKEN = 1  # packets taken; the buffer is empty
    PAHO = 2  # paho's reader must take what is at the head (or the end of the stream)


class BufferedSocket:
    """A socket read in large chunks; paho's `recv` calls are served from the buffer."""

    def __init__(self, sock) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0
        self.eof = False

    def recv(self, n: int) -> bytes:
        if self.pos >= len(self.buf):
            if self.eof:
                return b""
            data = self.sock.recv(max(n, _CHUNK))  # BlockingIOError when empty
            if len(data) <= n:
                return data
            self.buf, self.pos = bytearray(data), 0
        out = bytes(self.buf[self.pos : self.pos + n])
        self.consumed(self.pos + len(out))
        return out

    def fill(self) -> bool:
        """Something is buffered, or the stream ended; False: nothing to read now."""
        if self.pos < len(self.buf) or self.eof:
            return True
        try:
            data = self.sock.recv(_CHUNK)
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:
            return True  # paho's read meets it again and reports the lost connection
        self.eof = not data
        self.buf, self.pos = bytearray(data), 0
        return True

    def consumed(self, pos: int) -> None:
        if pos >= len(self.buf):
            self.buf.clear()
            self.pos = 0
        else:
            self.pos = pos

    def pending(self) -> int:
        inner = self.sock.pending() if hasattr(self.sock, "pending") else 0
        return len(self.buf) - self.pos + inner

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


class FastClient(paho.Client):
    def _create_socket(self):
        return BufferedSocket(super()._create_socket())


def _internals_present() -> bool:
    try:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2)
        return (
            callable(getattr(paho.Client, "_create_socket", None))
            and c._in_packet.get("command") == 0
            and c._sock is None
            and list(inspect.signature(paho.Client._packet_queue).parameters)[:5]
            == ["self", "command", "packet", "mid", "qos"]
        )
    except Exception:
        return False


AVAILABLE = _internals_present()
_PUBACK = struct.Struct("!BBH")


def ack_many(client: FastClient, mids: list[int]) -> None:
    """QoS 1 PUBACKs (MQTT 5's short form: success, no properties) in one write."""
    data = b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids])
    client._packet_queue(paho.PUBACK, data, 0, 1)


def read(client: FastClient, deliver: Deliver, v5: bool) -> Step:
    sock = client._sock
    if not isinstance(sock, BufferedSocket):
        return Step.PAHO
    if not sock.fill():
        return Step.EMPTY
    if client._in_packet["command"] != 0:  # paho is inside a packet
        return Step.PAHO
    buf, pos, end = sock.buf, sock.pos, len(sock.buf)
    while pos + 1 < end:
        cmd = buf[pos]
        if cmd & 0xF0 != 0x30 or cmd & 0x06 > 0x02:  # not PUBLISH QoS 0/1
            break
        length = shift = 0  # remaining length: 1-4 bytes of 7 bits
        i = pos + 1
        while i < end and shift <= 21:
            byte = buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        else:
            break  # incomplete or malformed: paho decides
        body_end = i + length
        if body_end > end:
            break
        try:
            at = i + 2 + ((buf[i] << 8) | buf[i + 1])
            topic = buf[i + 2 : at].decode("utf-8")
            mid = 0
            if cmd & 0x02:
                mid = (buf[at] << 8) | buf[at + 1]
                at += 2
            if v5:
                if buf[at] != 0:  # properties: paho parses them
                    break
                at += 1
        except (IndexError, UnicodeDecodeError):
            break
        if not topic or at > body_end:  # topic alias, or malformed: paho decides
            break
        deliver(
            topic, bytes(buf[at:body_end]), (cmd & 0x06) >> 1, bool(cmd & 1), mid, bool(cmd & 8)
        )
        pos = body_end
    sock.consumed(pos)
    return Step.PAHO if sock.pos < len(sock.buf) or sock.eof else Step.TAKEN
