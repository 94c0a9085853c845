"""MQTT 5 on the wire, written for tests without paho: a one-shot CONNECT probe and a
scripted broker. Tests of the transport then share no decoder with what they test.
Packet encoding is the ingest benchmark's (bench/ingest_wire.py, no paho either)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.ingest_wire import packet, utf8

CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
PUBREC, PUBREL, PUBCOMP = 0x50, 0x60, 0x70
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 0x80, 0x90, 0xC0, 0xD0, 0xE0


def connect_packet(
    client_id: str, username: str | None = None, password: str | None = None
) -> bytes:
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    body = utf8("MQTT") + bytes([5, flags]) + struct.pack("!H", 30) + b"\x00" + utf8(client_id)
    if username:
        body += utf8(username)
    if password:
        body += utf8(password)
    return packet(CONNECT, body)


def publish_packet(
    topic: str | bytes,
    payload: bytes,
    qos: int = 0,
    mid: int = 0,
    dup: bool = False,
    retain: bool = False,
    properties: bytes | None = b"\x00",
) -> bytes:
    """PUBLISH; `properties` is MQTT 5's encoded property block (None: MQTT 3.1.1)."""
    body = utf8(topic) + (struct.pack("!H", mid) if qos else b"")
    body += (properties or b"") + payload
    return packet(PUBLISH | (qos << 1) | (0x08 if dup else 0) | int(retain), body)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def connack_reason(
    port: int,
    *,
    user: str | None = None,
    password: str | None = None,
    ca: Path | None = None,
    timeout: float = 10.0,
) -> int | str:
    """The CONNACK reason code one MQTT 5 connection attempt gets (0: accepted), or the
    name of the TLS or socket error that ended it, or "no CONNACK"."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if ca is not None:
            ctx = ssl.create_default_context(cafile=str(ca))
            ctx.check_hostname = False  # the broker's name is checked by the services' tests
            sock = ctx.wrap_socket(sock)
    except (ssl.SSLError, OSError) as exc:
        return type(exc).__name__
    with sock:
        try:
            sock.sendall(connect_packet("probe", user, password))
            head = _recv_exact(sock, 2)
            if head[0] != CONNACK:
                return "no CONNACK"
            body = _recv_exact(sock, head[1])
            with contextlib.suppress(OSError):
                sock.sendall(packet(DISCONNECT, b"\x00"))
            return body[1]
        except ssl.SSLError as exc:
            return type(exc).__name__
        except (OSError, ConnectionError):
            return "no CONNACK"


Script = Callable[["Connection", int, bytes], Awaitable[None]]


class Connection:
    """One client connection to `ScriptedBroker`; `packets` is what the client sent."""

    def __init__(self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.number = number
        self.reader = reader
        self.writer = writer
        self.packets: list[tuple[int, bytes]] = []
        self.v5 = True

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


class ScriptedBroker:
    """A loopback MQTT 5 broker that accepts every CONNECT and hands each other packet
    to `script(conn, cmd, body)`; it answers PINGREQ and SUBSCRIBE (QoS 1 granted)
    unless the script is given them. For faults no real broker produces."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections: list[Connection] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self.changed = asyncio.Event()

    async def __aenter__(self) -> ScriptedBroker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for c in self.connections:
            c.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def wait(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(len(self.connections) + 1, reader, writer)
        self.connections.append(conn)
        try:
            while True:
                first = await reader.readexactly(1)
                length = shift = 0
                while True:
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await reader.readexactly(length)
                cmd = first[0]
                conn.packets.append((cmd, body))
                self.changed.set()
                if cmd == CONNECT:
                    conn.v5 = body[6] == 5
                    await conn.send(packet(CONNACK, b"\x00\x00\x00" if conn.v5 else b"\x00\x00"))
                elif cmd == PINGREQ:
                    await conn.send(packet(PINGRESP, b""))
                elif cmd & 0xF0 == SUBSCRIBE:
                    await conn.send(
                        packet(SUBACK, body[:2] + (b"\x00\x01" if conn.v5 else b"\x01"))
                    )
                    await self.script(conn, cmd, body)
                else:
                    await self.script(conn, cmd, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.changed.set()
