"""asyncio wrapper around paho-mqtt's threaded client.

paho runs its network loop in a thread (it reconnects by itself and keeps QoS 1
messages queued while offline); this class hands results and messages over to
the asyncio loop. One instance per service connection.

Several things make a client several times faster than stock paho (whose reader
makes a select() and three recv() calls per packet): the socket is read in large
chunks and the common packets (PUBLISH, PUBACK) are parsed straight from that
buffer; received messages reach the event loop in bursts (one wake-up per burst,
not per message); publishing wakes paho's thread once per burst, not per packet.
Manual acknowledgements can be sent for a whole batch in one write (`ack_many`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from nattillsyn import log

logger = log.get(__name__)


class MqttError(RuntimeError):
    pass


class MqttUnrouted(MqttError):
    """The broker took the message but no subscriber matched it (MQTT 5 reason 0x10)."""


UNROUTED = 0x10
UNROUTED_TEXT = "no matching subscribers"


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    protocol: int = paho.MQTTv5

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        """`mqtt[s]://[user[:pass]@]host[:port][?protocol=5|3.1.1]`."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} in {url!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        query = parse_qs(parts.query)
        proto = query.get("protocol", ["5"])[0]
        if proto not in ("5", "3.1.1"):
            raise ValueError(f"protocol must be 5 or 3.1.1, not {proto!r}")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            protocol=paho.MQTTv5 if proto == "5" else paho.MQTTv311,
        )


@dataclass(slots=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    properties: Properties | None = field(default=None, repr=False)
    # Which connection delivered it: a manual ack is only valid on that connection
    # (after a reconnect the broker redelivers unacknowledged messages itself).
    generation: int = 0
    received_at: float = 0.0  # time.time() when paho handed it over
    dup: bool = False


_PUBACK = struct.Struct("!BBH")
_READ_CHUNK = 1 << 16
_READS_PER_WAKEUP = 2000  # then let paho write (acks, publishes) before reading on


class _BufferedSocket:
    """A socket read in large chunks; `pending()` tells paho that more is buffered.

    paho asks `pending()` (meant for TLS) before select() and reads again without
    waiting while it is positive, so buffered packets are parsed without syscalls.
    `_Client` also parses whole packets straight from the buffer (`fill`, `_buf`,
    `_pos`).
    """

    def __init__(self, sock) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    def recv(self, n: int) -> bytes:
        avail = len(self._buf) - self._pos
        if avail <= 0:
            if self._eof:
                return b""
            data = self._sock.recv(max(n, _READ_CHUNK))  # raises BlockingIOError when empty
            if len(data) <= n:
                return data
            self._buf = bytearray(data)
            self._pos = 0
            avail = len(self._buf)
        take = min(n, avail)
        out = bytes(self._buf[self._pos : self._pos + take])
        self.consumed(self._pos + take)
        return out

    def fill(self) -> bool:
        """Buffer a chunk if none is buffered; False when the socket has nothing now.
        At end of stream the next `recv` returns b"" (paho reports the lost connection)."""
        if len(self._buf) > self._pos or self._eof:
            return True
        data = self._sock.recv(_READ_CHUNK)
        if not data:
            self._eof = True
        self._buf = bytearray(data)
        self._pos = 0
        return True

    def consumed(self, pos: int) -> None:
        if pos >= len(self._buf):
            self._buf.clear()
            self._pos = 0
        else:
            self._pos = pos

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + inner

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _Wakeup:
    """paho's wake-up socket (network thread, select), written once until the thread
    has taken the queued packets (`armed` is set again by `_Client._packet_write`)."""

    def __init__(self, sock) -> None:
        self._sock = sock
        self.armed = True

    def send(self, data: bytes) -> int:
        if not self.armed:
            return 0
        self.armed = False
        return self._sock.send(data)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def _plain_packet(pkt: dict) -> bool:
    """Nothing happens after writing it (paho acts after QoS 0 PUBLISH and DISCONNECT)."""
    cmd = pkt["command"] & 0xF0
    return cmd != paho.DISCONNECT and not (cmd == paho.PUBLISH and pkt["qos"] == 0)


class _Client(paho.Client):
    """paho's client reading whole packets straight from `_BufferedSocket`, writing
    queued packets in one send, and not rescanning every outgoing message after
    each PUBACK when none is waiting for a slot.

    paho's own reader makes three recv() calls, a dict and two lock round trips per
    packet, builds a Properties object and matches per-topic callbacks for every
    message: more than the rest of a subscriber's receive path. The lean path here
    takes the common packets (PUBLISH QoS 0/1 without properties, PUBACK without
    properties) from the buffer; anything else, or a packet not yet complete, goes
    through paho's own path, which reads from the same buffer.
    """

    # Set by MqttClient: takes (topic, payload, qos, retain, mid, properties, dup).
    _deliver: Callable[..., None] | None = None

    def _handle_publish(self) -> paho.MQTTErrorCode:
        """A PUBLISH read by paho's own reader (e.g. split across reads)."""
        cmd = self._in_packet["command"]
        if self._deliver is None or (cmd & 0x06) >> 1 >= 2:  # QoS 2: paho's path
            return super()._handle_publish()
        if self._lean_publish(cmd, self._in_packet["packet"], 0, None) < 0:
            return super()._handle_publish()
        return paho.MQTT_ERR_SUCCESS

    def _lean_publish(self, cmd: int, buf: bytes | bytearray, i: int, end: int | None) -> int:
        """Deliver the PUBLISH whose variable header starts at buf[i] (body ends at
        `end`); -1 if it is not the common case (paho's path then takes it)."""
        qos = (cmd & 0x06) >> 1
        try:
            pos = i + 2 + ((buf[i] << 8) | buf[i + 1])
            topic = buf[i + 2 : pos].decode("utf-8")
            mid = 0
            if qos:
                mid = (buf[pos] << 8) | buf[pos + 1]
                pos += 2
            if self._protocol == paho.MQTTv5:
                if buf[pos] != 0:  # properties present: paho parses them
                    return -1
                pos += 1
        except (IndexError, UnicodeDecodeError):
            return -1
        if not topic or (end is not None and pos > end):  # topic alias (v5) or malformed
            return -1
        self._deliver(
            topic, bytes(buf[pos:end]), qos, bool(cmd & 0x01), mid, None, bool(cmd & 0x08)
        )  # type: ignore[misc]
        if qos == 1 and not self._manual_ack:
            self._send_puback(mid)
        return mid

    _puback_reasons: ClassVar[dict[int, paho.ReasonCode]] = {}
    _no_properties = Properties(PacketTypes.PUBACK)

    def _handle_pubackcomp(self, cmd) -> paho.MQTTErrorCode:
        """Lean PUBACK decoding for MQTT 5's common form (packet id and optional reason,
        no properties); paho's own path for the rest. Callbacks get a shared, empty
        Properties: do not modify it."""
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or self._protocol != paho.MQTTv5 or len(packet) not in (2, 3):
            return super()._handle_pubackcomp(cmd)
        return self._puback((packet[0] << 8) | packet[1], packet[2] if len(packet) == 3 else 0)

    def _puback(self, mid: int, value: int) -> paho.MQTTErrorCode:
        reason = self._puback_reasons.get(value)
        if reason is None:
            reason = self._puback_reasons[value] = paho.ReasonCode(
                PacketTypes.PUBACK, identifier=value
            )
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, reason, self._no_properties)
        return paho.MQTT_ERR_SUCCESS

    def _update_inflight(self) -> paho.MQTTErrorCode:
        # paho walks all outgoing messages after every PUBACK looking for queued
        # ones; when every outgoing message is in flight there are none.
        if len(self._out_messages) <= self._inflight_messages:
            return paho.MQTT_ERR_SUCCESS
        return super()._update_inflight()

    # paho writes a byte to its wake-up socket pair for every queued packet, a syscall
    # per publish; every socket paho puts there is wrapped to write once per burst.
    _wake: _Wakeup | None = None

    @property
    def _sockpairW(self) -> _Wakeup | None:
        return self._wake

    @_sockpairW.setter
    def _sockpairW(self, sock) -> None:
        self._wake = None if sock is None else _Wakeup(sock)

    def _packet_write(self) -> paho.MQTTErrorCode:
        # Re-armed before taking packets: whatever is queued later wakes the thread again.
        if self._wake is not None:
            self._wake.armed = True
        out = self._out_packet
        if len(out) > 1 and _plain_packet(out[0]) and _plain_packet(out[1]):
            chunks = []
            size = 0
            while out and size < _READ_CHUNK:
                try:
                    pkt = out.popleft()
                except IndexError:
                    break
                if not _plain_packet(pkt):
                    out.appendleft(pkt)
                    break
                data = pkt["packet"][pkt["pos"] :]
                chunks.append(data)
                size += len(data)
            # One synthetic packet: paho handles partial writes of it as of any other.
            out.appendleft(
                {
                    "command": paho.PUBACK,
                    "mid": 0,
                    "qos": 1,
                    "pos": 0,
                    "to_process": size,
                    "packet": b"".join(chunks),
                    "info": None,
                }
            )
        return super()._packet_write()

    def _create_socket(self):
        sock = super()._create_socket()
        if self._transport == "websockets":
            return sock
        return _BufferedSocket(sock)

    def _fill(self, sock: _BufferedSocket) -> bool:
        """Something to parse is buffered (or an error/end for paho to report)."""
        try:
            return sock.fill()
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except ssl.SSLWantWriteError:
            self._call_socket_register_write()
            return False
        except OSError:
            return True  # paho's read meets it again and reports the lost connection

    def _read_lean(self, sock: _BufferedSocket) -> paho.MQTTErrorCode:
        """Handle the complete common packets at the head of the buffer; stop at the
        first other or incomplete one, which paho's reader then takes."""
        buf, pos, end = sock._buf, sock._pos, len(sock._buf)
        v5 = self._protocol == paho.MQTTv5
        rc = paho.MQTT_ERR_SUCCESS
        start = pos
        while pos + 1 < end and not rc:
            cmd = buf[pos]
            length = shift = 0  # remaining length: 1-4 bytes of 7 bits
            i = pos + 1
            complete = False
            while i < end and shift <= 21:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    complete = True
                    break
                shift += 7
            body_end = i + length
            if not complete or body_end > end:
                break
            kind = cmd & 0xF0
            if kind == 0x30 and (cmd & 0x06) >> 1 < 2 and self._deliver is not None:
                if self._lean_publish(cmd, buf, i, body_end) < 0:
                    break
            elif kind == 0x40 and (length == 2 or (v5 and length == 3)):
                rc = self._puback((buf[i] << 8) | buf[i + 1], buf[i + 2] if length == 3 else 0)
            else:
                break
            pos = body_end
        if pos != start:
            sock.consumed(pos)
            with self._msgtime_mutex:
                self._last_bytes_received = paho.time_func()
        return rc

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        sock = self._sock
        if not isinstance(sock, _BufferedSocket):
            return super().loop_read(max_packets)
        for _ in range(_READS_PER_WAKEUP):
            if self._sock is not sock:
                return paho.MQTT_ERR_NO_CONN
            if self._in_packet["command"] == 0:  # at a packet boundary
                if not self._fill(sock):
                    return paho.MQTT_ERR_SUCCESS
                rc = self._read_lean(sock)
                if rc:
                    return self._loop_rc_handle(rc)
                if sock._pos >= len(sock._buf) and not sock._eof:
                    continue  # all taken: read on
            rc = self._packet_read()  # the packet the lean path left, or part of it
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == paho.MQTT_ERR_AGAIN:
                return paho.MQTT_ERR_SUCCESS
        return paho.MQTT_ERR_SUCCESS


@dataclass(frozen=True)
class TlsFiles:
    """Files for `mqtts://`: the CA that signed the broker's certificate and, for
    per-device credentials, the client's own certificate and key (None: system CAs,
    no client certificate)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class MqttClient:
    """Connect, publish with QoS 1 confirmation, subscribe, receive, manually acknowledge."""

    def __init__(
        self,
        url: str,
        client_id: str = "",
        *,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        will: Will | None = None,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        max_inflight: int = 100,
        retry_unrouted: bool = False,
        tls: TlsFiles | None = None,
    ) -> None:
        self.url = MqttUrl.parse(url)
        # MQTT 5: a PUBACK "no matching subscribers" (0x10) means nobody got the message,
        # e.g. just after a broker restart, before subscribers are back (Mosquitto does
        # not keep shared subscriptions over a restart). With retry_unrouted, QoS 1
        # publishes are sent again (backing off to 5 s) until a subscriber takes them.
        self._retry_unrouted = retry_unrouted
        self._retry_data: dict[int, tuple[str, bytes, int, bool, int]] = {}
        self._early_unrouted: set[int] = set()
        self._unrouted = 0  # waiting to be sent again
        self._stopped = False
        self.client_id = client_id
        self._clean_start = clean_start
        self._session_expiry = session_expiry_s
        self._manual_ack = manual_ack
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: deque[Received] = deque()
        self._ready = asyncio.Event()
        self._wake_scheduled = False
        self._generation = 0
        self.received = 0  # messages handed over by paho since start
        self._outstanding_limit: int | None = None
        self._outstanding_below = asyncio.Event()
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._early: dict[int, str | None] = {}  # answered before anybody waited: error
        self._need_subscriber: set[int] = set()  # publishes that fail on 'no subscribers'
        self._ignore: set[int] = set()  # publish_nowait: nobody will wait
        self._subscriptions: dict[str, int] = {}
        self._on_connect: list[Callable[[], None]] = []
        self.connected = asyncio.Event()
        self._first_connect: asyncio.Future[None] | None = None
        self.connects = 0

        v5 = self.url.protocol == paho.MQTTv5
        kwargs: dict = {
            "callback_api_version": paho.CallbackAPIVersion.VERSION2,
            "client_id": client_id,
            "protocol": self.url.protocol,
            "manual_ack": manual_ack,
        }
        if not v5:
            kwargs["clean_session"] = clean_start
        self._client = _Client(**kwargs)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)  # unbounded: the caller bounds its own backlog
        self._client.reconnect_delay_set(min_delay=1, max_delay=15)
        if self.url.username:
            self._client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            files = tls or TlsFiles()
            self._client.tls_set(
                ca_certs=files.ca_file,
                certfile=files.cert_file,
                keyfile=files.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        elif tls is not None and (tls.cert_file or tls.ca_file):
            raise ValueError("TLS files given but the MQTT URL is not mqtts://")
        if will:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        self._connect_props: Properties | None = None
        if v5:
            props = Properties(PacketTypes.CONNECT)
            if session_expiry_s:
                props.SessionExpiryInterval = session_expiry_s
            if receive_maximum:
                props.ReceiveMaximum = receive_maximum
            self._connect_props = props
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_publish = self._handle_publish
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_message = self._handle_message
        self._client._deliver = self._deliver

    # -- lifecycle -------------------------------------------------------------

    async def start(self, timeout: float = 15.0) -> None:
        """Connect (retrying in the background) and wait for the first CONNACK."""
        self._loop = asyncio.get_running_loop()
        self._first_connect = self._loop.create_future()
        kwargs: dict = {"keepalive": 30}
        if self.url.protocol == paho.MQTTv5:
            kwargs["clean_start"] = self._clean_start
            kwargs["properties"] = self._connect_props
        self._client.connect_async(self.url.host, self.url.port, **kwargs)
        self._client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._first_connect), timeout)
        except TimeoutError:
            self._client.loop_stop()
            raise MqttError(
                f"no connection to MQTT broker {self.url.host}:{self.url.port} within {timeout}s"
            ) from None

    async def stop(self, *, publish_will: bool = False) -> None:
        """Disconnect cleanly (the last will is not sent unless asked) and stop the thread.

        Packets already queued (acknowledgements above all) are written first: paho's
        thread may otherwise stop before it writes them."""
        await self._flush(2.0)
        self._stopped = True
        if publish_will and self.url.protocol == paho.MQTTv5:
            props = Properties(PacketTypes.DISCONNECT)
            self._client.disconnect(
                reasoncode=paho.ReasonCode(PacketTypes.DISCONNECT, identifier=4), properties=props
            )
        else:
            self._client.disconnect()
        await self._flush(2.0, until_closed=True)
        await asyncio.to_thread(self._client.loop_stop)
        self.connected.clear()
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for fut in pending:
            if not fut.done():
                fut.set_exception(MqttError("client stopped before the broker confirmed"))

    async def _flush(self, timeout: float, *, until_closed: bool = False) -> None:
        client = self._client
        for _ in range(int(timeout / 0.005)):
            if not self.connected.is_set() or client._sock is None:
                return
            if not until_closed and not client._out_packet:
                return
            await asyncio.sleep(0.005)

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Run `callback` in the event loop after every (re)connection."""
        self._on_connect.append(callback)

    # -- publish / subscribe ---------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = 30.0,
        require_subscriber: bool = False,
    ) -> None:
        """Publish; for QoS > 0 wait until the broker confirmed (PUBACK/PUBCOMP), and with
        `retry_unrouted` until a subscriber took it. With `require_subscriber` (MQTT 5) a
        PUBACK "no matching subscribers" raises MqttUnrouted: the caller keeps the message
        (e.g. in its disk queue) and sends it again later."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if require_subscriber and qos:
            with self._lock:
                self._need_subscriber.add(info.mid)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise MqttError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        if qos == 0:
            return
        assert self._loop is not None, "start() first"
        fut: asyncio.Future[None] = self._loop.create_future()
        if self._register(info.mid, fut, (topic, payload, qos, retain, 0)):
            return
        if timeout is None:
            await fut
        else:
            await asyncio.wait_for(fut, timeout)

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> None:
        """Queue a publish without waiting for the broker (paho keeps QoS 1 queued while offline)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise MqttError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        if qos:
            self._register(info.mid, None, (topic, payload, qos, retain, 0))

    def _register(
        self,
        mid: int,
        waiter: asyncio.Future[None] | None,
        data: tuple[str, bytes, int, bool, int],
    ) -> bool:
        """Track a QoS > 0 publish until confirmed; True if it already was."""
        with self._lock:
            if mid in self._early:
                error = self._outcome(mid, self._early.pop(mid))
                if error is None:
                    return True
                if waiter is not None:
                    _set_exc(waiter, error)
                return False
            if mid in self._early_unrouted:  # answered "no subscribers" already
                self._early_unrouted.discard(mid)
                self._unrouted += 1
                self._call(self._retry_later, data, waiter)
                return False
            if waiter is None:
                self._ignore.add(mid)
            else:
                self._pending[mid] = waiter
            if self._retry_unrouted:
                self._retry_data[mid] = data
        return False

    def _retry_later(
        self, data: tuple[str, bytes, int, bool, int], waiter: asyncio.Future[None] | None
    ) -> None:
        assert self._loop is not None
        attempt = data[4]
        if attempt == 0:
            logger.warning("no subscriber took a message; sending it again", topic=data[0])
        self._loop.call_later(min(0.25 * 2**attempt, 5.0), self._retry_now, data, waiter)

    def _retry_now(
        self, data: tuple[str, bytes, int, bool, int], waiter: asyncio.Future[None] | None
    ) -> None:
        topic, payload, qos, retain, attempt = data
        if self._stopped:
            with self._lock:
                self._unrouted -= 1
            if waiter is not None:
                _set_exc(waiter, MqttError("client stopped before a subscriber took the message"))
            return
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        with self._lock:
            self._unrouted -= 1
        self._register(info.mid, waiter, (topic, payload, qos, retain, attempt + 1))

    @property
    def outstanding(self) -> int:
        """QoS > 0 publishes not yet confirmed by the broker (queued or in flight), and
        with `retry_unrouted` those waiting to be sent again."""
        return len(self._client._out_messages) + self._unrouted

    async def wait_outstanding_below(self, n: int, timeout: float | None = None) -> None:
        """Flow control for `publish_nowait`: wait until fewer than `n` publishes await
        the broker's confirmation (raises TimeoutError after `timeout` seconds)."""
        if self.outstanding < n:
            return
        self._outstanding_limit = n
        try:
            async with asyncio.timeout(timeout):
                while self.outstanding >= n:
                    self._outstanding_below.clear()
                    # paho drops a confirmed message just after the callback that wakes
                    # us: look again shortly rather than miss that last one.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._outstanding_below.wait(), 0.05)
        finally:
            self._outstanding_limit = None

    async def subscribe(self, *filters: str, qos: int = 1, timeout: float = 15.0) -> None:
        assert self._loop is not None, "start() first"
        for f in filters:
            self._subscriptions[f] = qos
        result, mid = self._client.subscribe([(f, qos) for f in filters])
        if result != paho.MQTT_ERR_SUCCESS:
            raise MqttError(f"subscribe failed: {paho.error_string(result)}")
        fut: asyncio.Future[None] = self._loop.create_future()
        with self._lock:
            if mid in self._early:
                error = self._outcome(mid, self._early.pop(mid))
                if error is not None:
                    raise error
                return
            self._pending[mid] = fut
        await asyncio.wait_for(fut, timeout)

    async def messages(self) -> AsyncIterator[Received]:
        while True:
            yield await self.next_message()

    async def _wait_inbox(self, timeout: float | None) -> None:
        while not self._inbox:
            self._ready.clear()
            if timeout is None:
                await self._ready.wait()
            else:
                await asyncio.wait_for(self._ready.wait(), timeout)

    async def next_message(self, timeout: float | None = None) -> Received:
        await self._wait_inbox(timeout)
        return self._inbox.popleft()

    async def next_batch(self, max_messages: int, max_wait: float) -> list[Received]:
        """Wait for a first message, then gather more until `max_messages` or until the
        first one has waited `max_wait` seconds since it arrived: the size- and
        time-bounded batch of a writer. A writer that fell behind gets a full or
        immediate batch, one that keeps up waits at most `max_wait` per message."""
        await self._wait_inbox(None)
        inbox = self._inbox
        batch: list[Received] = []
        deadline = inbox[0].received_at + max_wait
        while True:
            while inbox and len(batch) < max_messages:
                batch.append(inbox.popleft())
            remaining = min(deadline - time.time(), max_wait)  # a clock step never stalls it
            if len(batch) >= max_messages or remaining <= 0:
                return batch
            try:
                await self._wait_inbox(remaining)
            except TimeoutError:
                return batch

    @property
    def backlog(self) -> int:
        """Messages received and not yet taken by the application."""
        return len(self._inbox)

    def ack(self, msg: Received) -> None:
        """Acknowledge a message received with manual_ack (after it is safely stored)."""
        self.ack_many((msg,))

    def ack_many(self, msgs: Iterable[Received]) -> int:
        """Acknowledge messages received with manual_ack, all QoS 1 PUBACKs in one write.

        Messages delivered on an earlier connection are skipped: the broker redelivers
        them on the resumed session and their copies are acknowledged then. Returns
        how many were acknowledged."""
        if not self._manual_ack:
            return 0
        with self._lock:
            gen = self._generation
            mids = []
            for m in msgs:
                if m.generation != gen or m.qos == 0:
                    continue
                if m.qos == 1:
                    mids.append(m.mid)
                else:
                    self._client.ack(m.mid, m.qos)
            if mids:
                packet = b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids])
                self._client._packet_queue(paho.PUBACK, packet, 0, 1)
        return len(mids)

    # -- paho callbacks (network thread) -----------------------------------------

    def _call(self, fn: Callable, *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.warning(
                "mqtt connect refused", reason=str(reason_code), client_id=self.client_id
            )
            return
        _no_delay(client)
        if self._subscriptions:
            client.subscribe(list(self._subscriptions.items()))
        self._call(self._connected)

    def _connected(self) -> None:
        self.connects += 1
        self.connected.set()
        if self._first_connect and not self._first_connect.done():
            self._first_connect.set_result(None)
        else:
            logger.info("mqtt reconnected", client_id=self.client_id)
        for cb in self._on_connect:
            cb()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._generation += 1  # acks for what the old connection delivered are void now
        self._call(self.connected.clear)
        if getattr(reason_code, "value", reason_code) != 0:
            logger.warning("mqtt disconnected", reason=str(reason_code), client_id=self.client_id)

    def _resolve(self, mid: int, error: str | None = None) -> None:
        with self._lock:
            if mid in self._ignore:
                self._ignore.discard(mid)
                return
            fut = self._pending.pop(mid, None)
            if fut is None:
                self._early[mid] = error
                return
            exc = self._outcome(mid, error)
        if exc is not None:
            self._call(_set_exc, fut, exc)
        else:
            self._call(_set_result, fut)

    def _outcome(self, mid: int, error: str | None) -> MqttError | None:
        """The exception a confirmation means (called with the lock held)."""
        needed = mid in self._need_subscriber
        self._need_subscriber.discard(mid)
        if error == UNROUTED_TEXT:
            return MqttUnrouted(error) if needed else None
        return MqttError(error) if error else None

    def _handle_publish(self, client, userdata, mid, reason_code, properties) -> None:
        unrouted = getattr(reason_code, "value", 0) == UNROUTED
        if self._retry_unrouted and unrouted:
            with self._lock:
                data = self._retry_data.pop(mid, None)
                if data is None:  # not registered yet: _register sees this
                    self._early_unrouted.add(mid)
                    return
                waiter = self._pending.pop(mid, None)
                self._ignore.discard(mid)
                self._unrouted += 1
            self._call(self._retry_later, data, waiter)
            return
        if self._retry_data:
            with self._lock:
                self._retry_data.pop(mid, None)
        if unrouted:  # an error only for publishes that asked for a subscriber
            self._resolve(mid, UNROUTED_TEXT)
        else:
            failed = getattr(reason_code, "is_failure", False)
            self._resolve(mid, f"broker refused publish: {reason_code}" if failed else None)
        limit = self._outstanding_limit
        # paho calls this before it forgets the message: the count still includes it.
        if limit is not None and len(client._out_messages) <= limit:
            self._call(self._outstanding_below.set)

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
        self._resolve(mid, f"broker refused subscription: {bad}" if bad else None)

    def _handle_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # never from a conforming broker; still no crash
            topic = message._topic.decode("utf-8", "backslashreplace")
        self._deliver(
            topic,
            bytes(message.payload),
            message.qos,
            bool(message.retain),
            message.mid,
            getattr(message, "properties", None),
            bool(message.dup),
        )

    def _deliver(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        mid: int,
        properties: Properties | None,
        dup: bool,
    ) -> None:
        """paho's network thread: queue for the event loop."""
        self._inbox.append(
            Received(
                topic, payload, qos, retain, mid, properties, self._generation, time.time(), dup
            )
        )
        self.received += 1
        # One wake-up of the event loop per burst, not per message.
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self._call(self._wake)

    def _wake(self) -> None:
        self._wake_scheduled = False
        if self._inbox:
            self._ready.set()


def _no_delay(client: paho.Client) -> None:
    """Disable Nagle: an alert written right after a PUBACK must not wait ~40 ms for the
    broker's delayed ACK (paho leaves TCP_NODELAY off)."""
    import contextlib
    import socket

    sock = client.socket()
    if sock is not None and hasattr(sock, "setsockopt"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _set_result(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _set_exc(fut: asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
