"""MQTT client on the asyncio event loop: the only module that imports paho.

(Timeouts use `asyncio.timeout`: Python 3.11's `wait_for` swallows a cancellation that
arrives as the awaited future completes, and a service being stopped then never stops.)

paho-mqtt speaks the protocol; this module drives it from the event loop through
paho's documented external-loop API (the socket callbacks, `loop_read`,
`loop_write`, `loop_misc`), as Home Assistant's MQTT integration does. Everything
runs in the loop's thread (only the blocking TCP/TLS connect runs in an executor),
so there is no network thread that could stop unnoticed and no locks. Any exception
on the read or write path is a protocol error: counted, logged, the connection is
dropped and made again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import Counter

from nattillsyn import log, mqtt_fastpath
from nattillsyn.mqtt_fastpath import Step

logger = log.get(__name__)

PROTOCOL_ERRORS = Counter(
    "nattillsyn_mqtt_protocol_errors_total",
    "Exceptions on the MQTT read/write path; each drops the connection, which is made again",
)
CONNECTS = Counter("nattillsyn_mqtt_connects_total", "MQTT connections accepted by the broker")

UNROUTED = 0x10
UNROUTED_TEXT = "no matching subscribers"
_PROTOCOL_ERROR = 0x82  # MQTT 5 DISCONNECT reason
_MALFORMED = (0x81, 0x82)  # MQTT 5 reasons: malformed packet, protocol error
_WITH_WILL = 0x04  # MQTT 5 DISCONNECT reason: disconnect, send the will
_READ_BURST = 1000  # packets per readable event before other callbacks get a turn
_MIN_DELAY, _MAX_DELAY = 1.0, 15.0  # reconnect back-off


class MqttError(RuntimeError):
    pass


class MqttUnrouted(MqttError):
    """The broker took the message but no subscriber matched it (MQTT 5 reason 0x10)."""


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    protocol: int = paho.MQTTv5

    @property
    def v5(self) -> bool:
        return self.protocol == paho.MQTTv5

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        """`mqtt[s]://[user[:pass]@]host[:port][?protocol=5|3.1.1]`."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} in {url!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        proto = parse_qs(parts.query).get("protocol", ["5"])[0]
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
    received_at: float = 0.0  # time.time() when it was read
    dup: bool = False


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


@dataclass(slots=True)
class _Publish:
    """A QoS > 0 publish until the broker confirmed it (None: nobody waits)."""

    waiter: asyncio.Future[None] | None
    topic: str
    payload: bytes
    qos: int
    retain: bool
    need_subscriber: bool = False
    attempt: int = 0


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
        self.client_id = client_id
        self._clean_start = clean_start
        self._manual_ack = manual_ack
        # MQTT 5: a PUBACK "no matching subscribers" (0x10) means nobody got the message,
        # e.g. just after a broker restart, before subscribers are back (Mosquitto does
        # not keep shared subscriptions over a restart). With retry_unrouted, QoS 1
        # publishes are sent again (backing off to 5 s) until a subscriber takes them.
        self._retry_unrouted = retry_unrouted
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._inbox: deque[Received] = deque()
        self._ready = asyncio.Event()
        self._generation = 0
        self.received = 0  # messages read since start
        self.connects = 0
        self.protocol_errors = 0
        self.connected = asyncio.Event()
        self._first_connect: asyncio.Future[None] | None = None
        self._on_connect: list[Callable[[], None]] = []
        self._subscriptions: dict[str, int] = {}
        self._publishes: dict[int, _Publish] = {}
        self._subscribing: dict[int, asyncio.Future[None]] = {}
        self._held: list[_Publish] = []  # published while paho opens a socket
        self._unrouted = 0  # waiting to be sent again
        self._outstanding_limit: int | None = None
        self._outstanding_below = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._opening: asyncio.Future[object] | None = None
        self._down = asyncio.Event()  # the current connection (attempt) ended
        self._write_idle = asyncio.Event()
        self._write_idle.set()
        self._sock: socket.socket | None = None
        self._fd = -1
        self._broken = False
        self._stopped = True
        self._progress = 0  # packets handled: a read burst stops when one made none

        kwargs: dict = {
            "callback_api_version": paho.CallbackAPIVersion.VERSION2,
            "client_id": client_id,
            "protocol": self.url.protocol,
            "manual_ack": manual_ack,
        }
        if not self.url.v5:
            kwargs["clean_session"] = clean_start
        # Manual-ack clients take the heavy traffic (ingest): the fast reader, if this
        # paho release has what it needs (see mqtt_fastpath).
        self._fast = manual_ack and mqtt_fastpath.AVAILABLE
        cls = mqtt_fastpath.FastClient if self._fast else paho.Client
        c = self._client = cls(**kwargs)
        c.max_inflight_messages_set(max_inflight)
        c.max_queued_messages_set(0)  # unbounded: the caller bounds its own backlog
        if self.url.username:
            c.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            files = tls or TlsFiles()
            c.tls_set(
                ca_certs=files.ca_file,
                certfile=files.cert_file,
                keyfile=files.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        elif tls is not None and (tls.cert_file or tls.ca_file):
            raise ValueError("TLS files given but the MQTT URL is not mqtts://")
        if will:
            c.will_set(will.topic, will.payload, will.qos, will.retain)
        self._connect_props: Properties | None = None
        if self.url.v5:
            props = Properties(PacketTypes.CONNECT)
            if session_expiry_s:
                props.SessionExpiryInterval = session_expiry_s
            if receive_maximum:
                props.ReceiveMaximum = receive_maximum
            self._connect_props = props
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        c.on_publish = self._handle_publish
        c.on_subscribe = self._handle_subscribe
        c.on_message = self._handle_message
        # paho calls these from the connect thread too: _in_loop hands them over.
        c.on_socket_open = lambda _c, _u, sock: self._in_loop(self._socket_opened, sock)
        c.on_socket_close = lambda _c, _u, sock: self._in_loop(self._socket_closed, sock)
        c.on_socket_register_write = lambda _c, _u, sock: self._in_loop(self._want_write, sock)
        c.on_socket_unregister_write = lambda _c, _u, sock: self._in_loop(self._written, sock)

    # -- lifecycle -------------------------------------------------------------

    async def start(self, timeout: float = 15.0) -> None:
        """Connect (retrying in the background) and wait for the first CONNACK."""
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._first_connect = self._loop.create_future()
        self._stopped = False
        kwargs: dict = {"keepalive": 30}
        if self.url.v5:
            kwargs["clean_start"] = self._clean_start
            kwargs["properties"] = self._connect_props
        self._client.connect_async(self.url.host, self.url.port, **kwargs)
        self._runner = self._loop.create_task(self._run(), name=f"mqtt {self.client_id}")
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._first_connect)
        except TimeoutError:
            await self._halt()
            raise MqttError(
                f"no connection to MQTT broker {self.url.host}:{self.url.port} within {timeout}s"
            ) from None

    async def stop(self, *, publish_will: bool = False) -> None:
        """Disconnect cleanly (the last will is not sent unless asked).

        Packets already queued (acknowledgements above all) are written first."""
        await self.flush(2.0)
        await self._halt(_reason(self.url.v5, _WITH_WILL) if publish_will else None)

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait until what is queued (acknowledgements above all) is written."""
        if self.connected.is_set() and not self._write_idle.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._write_idle.wait()

    def drop_connection(self) -> None:
        """Cut the TCP connection without DISCONNECT, as a crash or a network failure
        would (the broker sends the will); the client connects again. For tests and
        fault injection."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    async def _halt(self, reason: ReasonCode | None = None) -> None:
        self._stopped = True
        if self._opening is not None and not self._opening.done():
            await asyncio.wait({self._opening}, timeout=10)
        if self._sock is not None:
            self._down.clear()
            self._client.disconnect(reasoncode=reason)  # paho closes the socket once written
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._down.wait()
            self._forget_socket()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        self.connected.clear()
        error = MqttError("client stopped before the broker confirmed")
        for p in [*self._publishes.values(), *self._held]:
            _set_exc(p.waiter, error)
        for fut in self._subscribing.values():
            _set_exc(fut, error)
        self._publishes.clear()
        self._subscribing.clear()
        self._held.clear()

    async def _run(self) -> None:
        """Connect, keep the connection (pings, timeouts) and connect again when it ends."""
        assert self._loop is not None
        delay = _MIN_DELAY
        while not self._stopped:
            self._down.clear()
            self._broken = False
            before = self.connects
            try:
                await self._open()
            except Exception as exc:  # refused, unreachable, TLS failure, DNS, ...
                logger.warning(
                    "mqtt connect failed", error=str(exc), client_id=self.client_id, retry_s=delay
                )
                self._down.set()
            while not self._down.is_set():
                try:
                    self._client.loop_misc()
                except Exception as exc:
                    self._protocol_error(exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._down.wait()
            if self._stopped:
                return
            if self.connects > before:
                delay = _MIN_DELAY
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    async def _open(self) -> None:
        """paho's blocking connect in a thread; publishes meanwhile wait here, so that
        none is queued between paho opening the socket and queueing CONNECT."""
        assert self._loop is not None
        self._opening = self._loop.run_in_executor(None, self._client.reconnect)
        try:
            await asyncio.shield(self._opening)
        finally:
            held, self._held = self._held, []
            for p in held:
                try:
                    self._send(p)
                except MqttError as exc:
                    _set_exc(p.waiter, exc)

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Run `callback` in the event loop after every (re)connection."""
        self._on_connect.append(callback)

    # -- event-loop I/O (paho's socket callbacks) -----------------------------

    def _in_loop(self, fn: Callable[..., object], *args: object) -> None:
        if threading.get_ident() == self._thread_id:
            fn(*args)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _socket_opened(self, sock) -> None:
        if sock.fileno() < 0 or self._loop is None:
            return
        self._forget_socket()
        self._sock, self._fd = sock, sock.fileno()
        # An alert written right after a PUBACK must not wait ~40 ms for Nagle.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._loop.add_reader(self._fd, self._on_readable)

    def _socket_closed(self, sock) -> None:
        if sock is self._sock:
            self._forget_socket()

    def _forget_socket(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._write_idle.set()
        self._sock, self._fd = None, -1

    def _want_write(self, sock) -> None:
        if sock is self._sock and self._loop is not None:
            self._write_idle.clear()
            self._loop.add_writer(self._fd, self._on_writable)

    def _written(self, sock) -> None:
        if sock is self._sock and self._loop is not None:
            self._loop.remove_writer(self._fd)
            self._write_idle.set()

    def _on_readable(self) -> None:
        if self._broken:
            return
        client = self._client
        try:
            for _ in range(_READ_BURST):
                if self._fast:
                    step = mqtt_fastpath.read(client, self._deliver, self.url.v5)
                    if step is Step.EMPTY:
                        break
                    if step is Step.PAHO and client.loop_read() != paho.MQTT_ERR_SUCCESS:
                        break
                    continue
                before = self._progress
                if client.loop_read() != paho.MQTT_ERR_SUCCESS or self._progress == before:
                    break
            sock = self._sock
            if isinstance(sock, ssl.SSLSocket) and sock.pending() and self._loop is not None:
                self._loop.call_soon(self._on_readable)  # decrypted bytes the fd won't signal
        except Exception as exc:
            self._protocol_error(exc)

    def _on_writable(self) -> None:
        try:
            self._client.loop_write()
        except Exception as exc:
            self._protocol_error(exc)

    def _count_protocol_error(self) -> None:
        self.protocol_errors += 1
        PROTOCOL_ERRORS.inc()

    def _protocol_error(self, exc: BaseException) -> None:
        """paho's reader state is unknown now: read no more; send DISCONNECT (MQTT 5:
        "protocol error", the broker then sends the will) and drop the connection. The
        runner connects again; what was unconfirmed is sent again, what was not
        acknowledged the broker delivers again."""
        self._count_protocol_error()
        logger.error(
            "mqtt protocol error: dropping the connection",
            error=repr(exc),
            client_id=self.client_id,
        )
        self._broken = True
        sock = self._sock
        if sock is None:
            self._down.set()
            return
        for step in ("disconnect", "shutdown"):  # the second makes the write fail
            with contextlib.suppress(Exception):
                if step == "disconnect":
                    self._client.disconnect(reasoncode=_reason(self.url.v5, _PROTOCOL_ERROR))
                else:
                    sock.shutdown(socket.SHUT_RDWR)
                self._client.loop_write()  # paho closes the socket after writing DISCONNECT
            if self._sock is not sock:
                return
        if self._sock is sock:  # still open: forget it; reconnect() closes it
            self._forget_socket()
            self._handle_disconnect(self._client, None, None, None, None)

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
        assert self._loop is not None, "start() first"
        fut = self._loop.create_future() if qos else None
        self._send(_Publish(fut, topic, payload, qos, retain, require_subscriber))
        if fut is not None:
            async with asyncio.timeout(timeout):
                await fut

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> None:
        """Queue a publish without waiting for the broker (paho keeps QoS 1 queued while offline)."""
        self._send(_Publish(None, topic, payload, qos, retain))

    def _send(self, p: _Publish) -> None:
        if self._opening is not None and not self._opening.done():
            self._held.append(p)
            return
        info = self._client.publish(p.topic, p.payload, qos=p.qos, retain=p.retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise MqttError(f"publish to {p.topic} failed: {paho.error_string(info.rc)}")
        if p.qos:
            self._publishes[info.mid] = p

    def _retry(self, track: _Publish) -> None:
        self._unrouted -= 1
        if self._stopped:
            _set_exc(track.waiter, MqttError("client stopped before a subscriber took it"))
            self._check_outstanding()
            return
        track.attempt += 1
        self._send(track)

    @property
    def outstanding(self) -> int:
        """QoS > 0 publishes not yet confirmed by the broker (queued or in flight), and
        with `retry_unrouted` those waiting to be sent again."""
        held = sum(1 for p in self._held if p.qos)
        return len(self._publishes) + held + self._unrouted

    @property
    def unrouted(self) -> int:
        """Publishes no subscriber took (MQTT 5), waiting to be sent again."""
        return self._unrouted

    def _check_outstanding(self) -> None:
        if self._outstanding_limit is not None and self.outstanding < self._outstanding_limit:
            self._outstanding_below.set()

    async def wait_outstanding_below(self, n: int, timeout: float | None = None) -> None:
        """Flow control for `publish_nowait`: wait until fewer than `n` publishes await
        the broker's confirmation (raises TimeoutError after `timeout` seconds)."""
        self._outstanding_limit = n
        try:
            async with asyncio.timeout(timeout):
                while self.outstanding >= n:
                    self._outstanding_below.clear()
                    await self._outstanding_below.wait()
        finally:
            self._outstanding_limit = None

    async def subscribe(self, *filters: str, qos: int = 1, timeout: float = 15.0) -> None:
        assert self._loop is not None, "start() first"
        for f in filters:
            self._subscriptions[f] = qos
        result, mid = self._client.subscribe([(f, qos) for f in filters])
        if result != paho.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"subscribe failed: {paho.error_string(result)}")
        fut: asyncio.Future[None] = self._loop.create_future()
        self._subscribing[mid] = fut
        async with asyncio.timeout(timeout):
            await fut

    # -- receiving ---------------------------------------------------------------

    async def messages(self) -> AsyncIterator[Received]:
        while True:
            yield await self.next_message()

    async def _wait_inbox(self, timeout: float | None) -> None:
        while not self._inbox:
            self._ready.clear()
            if timeout is None:
                await self._ready.wait()
            else:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()

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
        """Acknowledge messages received with manual_ack; returns how many.

        Messages delivered on an earlier connection are skipped: the broker redelivers
        them on the resumed session and their copies are acknowledged then."""
        if not self._manual_ack:
            return 0
        n, batch = 0, []
        for m in msgs:
            if m.generation != self._generation or not m.qos:
                continue
            n += 1
            if m.qos == 1 and self._fast:
                batch.append(m.mid)
            else:
                self._client.ack(m.mid, m.qos)
        if batch:  # one write for the batch (paho: a send() per PUBACK)
            mqtt_fastpath.ack_many(self._client, batch)
        return n

    # -- paho callbacks (event loop) ---------------------------------------------

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._progress += 1
        if reason_code.is_failure:
            logger.warning(
                "mqtt connect refused", reason=str(reason_code), client_id=self.client_id
            )
            return  # paho closes the connection; the runner tries again
        if self._subscriptions:
            client.subscribe(list(self._subscriptions.items()))
        self.connects += 1
        CONNECTS.inc()
        self.connected.set()
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_result(None)
        else:
            logger.info("mqtt reconnected", client_id=self.client_id)
        for cb in self._on_connect:
            cb()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._generation += 1  # acks for what the old connection delivered are void now
        self.connected.clear()
        self._down.set()
        if getattr(reason_code, "value", 0) in _MALFORMED:  # paho found it itself
            self._count_protocol_error()
        if getattr(reason_code, "value", 0) and not self._stopped:
            logger.warning("mqtt disconnected", reason=str(reason_code), client_id=self.client_id)

    def _handle_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._progress += 1
        track = self._publishes.pop(mid, None)
        if track is None:
            return
        code = getattr(reason_code, "value", 0)
        if code == UNROUTED and self._retry_unrouted:
            if track.attempt == 0:
                logger.warning("no subscriber took a message; sending it again", topic=track.topic)
            self._unrouted += 1
            assert self._loop is not None
            self._loop.call_later(min(0.25 * 2**track.attempt, 5.0), self._retry, track)
        elif code == UNROUTED and track.need_subscriber:  # else not an error
            _set_exc(track.waiter, MqttUnrouted(UNROUTED_TEXT))
        elif getattr(reason_code, "is_failure", False):
            _set_exc(track.waiter, MqttError(f"broker refused publish: {reason_code}"))
        else:
            _set_result(track.waiter)
        self._check_outstanding()

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._progress += 1
        bad = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
        fut = self._subscribing.pop(mid, None)
        if fut is None:
            if bad:
                logger.warning("broker refused a subscription", reasons=str(bad))
        elif bad:
            _set_exc(fut, MqttError(f"broker refused subscription: {bad}"))
        else:
            _set_result(fut)

    def _handle_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # never from a conforming broker: stored as a dead letter
            topic = "\ufffd"
        self._deliver(
            topic,
            message.payload,
            message.qos,
            bool(message.retain),
            message.mid,
            bool(message.dup),
            getattr(message, "properties", None),
        )

    def _deliver(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        mid: int,
        dup: bool,
        properties: Properties | None = None,
    ) -> None:
        self._progress += 1
        self._inbox.append(
            Received(
                topic, payload, qos, retain, mid, properties, self._generation, time.time(), dup
            )
        )
        self.received += 1
        self._ready.set()


def _reason(v5: bool, code: int) -> ReasonCode | None:
    return ReasonCode(PacketTypes.DISCONNECT, identifier=code) if v5 else None


def _set_result(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


def _set_exc(fut: asyncio.Future[None] | None, exc: BaseException) -> None:
    if fut is not None and not fut.done():
        fut.set_exception(exc)
