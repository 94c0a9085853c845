"""The MQTT connection on the asyncio event loop: connect, keep, reconnect; socket I/O.

(Timeouts use `asyncio.timeout`: Python 3.11's `wait_for` swallows a cancellation that
arrives as the awaited future completes, and a service being stopped then never stops.)

paho-mqtt speaks the protocol; this module drives it from the event loop through
paho's documented external-loop API (the socket callbacks, `loop_read`,
`loop_write`, `loop_misc`), as Home Assistant's MQTT integration does. Everything
runs in the loop's thread (only the blocking TCP/TLS connect runs in an executor),
so there is no network thread that could stop unnoticed and no locks. Any exception
on the read or write path is a protocol error: counted, logged, the connection is
dropped and made again. Publishing, subscribing and receiving are `client.MqttClient`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import Counter

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.mqtt import fastpath
from nattillsyn.mqtt.fastpath import Step
from nattillsyn.mqtt.types import MqttError, MqttUrl, TlsFiles, Will

logger = log.get(__name__)

PROTOCOL_ERRORS = Counter(
    "nattillsyn_mqtt_protocol_errors_total",
    "Exceptions on the MQTT read/write path; each drops the connection, which is made again",
)
CONNECTS = Counter("nattillsyn_mqtt_connects_total", "MQTT connections accepted by the broker")

_PROTOCOL_ERROR = 0x82  # MQTT 5 DISCONNECT reason
_MALFORMED = (0x81, 0x82)  # MQTT 5 reasons: malformed packet, protocol error
_WITH_WILL = 0x04  # MQTT 5 DISCONNECT reason: disconnect, send the will
_READ_BURST = 1000  # packets per readable event before other callbacks get a turn
_MIN_DELAY, _MAX_DELAY = 1.0, 15.0  # reconnect back-off


class MqttConnection:
    """One paho client driven by the event loop; `MqttClient` adds the traffic."""

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
        tls: TlsFiles | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.url = MqttUrl.parse(url)
        self.clock = clock  # the reconnect back-off and the client's re-send timers
        self.client_id = client_id
        self._clean_start = clean_start
        self._manual_ack = manual_ack
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._generation = 0
        self.connects = 0
        self.protocol_errors = 0
        self.connected = asyncio.Event()
        self._first_connect: asyncio.Future[None] | None = None
        self._on_connect: list[Callable[[], None]] = []
        self._subscriptions: dict[str, int] = {}
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
        # A received PUBLISH, from paho's reader or the fast path (the client's `_deliver`).
        self._deliver: fastpath.Deliver

        kwargs: dict = {
            "callback_api_version": paho.CallbackAPIVersion.VERSION2,
            "client_id": client_id,
            "protocol": self.url.protocol,
            "manual_ack": manual_ack,
        }
        if not self.url.v5:
            kwargs["clean_session"] = clean_start
        # Manual-ack clients take the heavy traffic (ingest): the fast reader, if this
        # paho release has what it needs (see fastpath).
        self._fast = manual_ack and fastpath.AVAILABLE
        cls = fastpath.FastClient if self._fast else paho.Client
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

    async def start_retrying(
        self, clock: Clock | None = None, max_delay_s: float = 30.0, **context: object
    ) -> None:
        """`start` until the broker answers, waiting 1, 2, 4 … `max_delay_s` seconds between
        tries on `clock` (the service's; default this client's), while a device or gateway
        without network keeps working."""
        delay = 1.0
        while True:
            try:
                await self.start(timeout=15)
                return
            except MqttError as exc:
                logger.warning(
                    "broker unreachable; retrying",
                    host=self.url.host,
                    error=str(exc),
                    retry_in_s=delay,
                    **context,
                )
                await (clock or self.clock).sleep(delay)
                delay = min(max_delay_s, delay * 2)

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
        self._abandon(MqttError("client stopped before the broker confirmed"))

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
            await self.clock.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    async def _open(self) -> None:
        """paho's blocking connect in a thread; publishes meanwhile wait here, so that
        none is queued between paho opening the socket and queueing CONNECT."""
        assert self._loop is not None
        self._opening = self._loop.run_in_executor(None, self._client.reconnect)
        try:
            await asyncio.shield(self._opening)
        finally:
            self._release_held()

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
                    step = fastpath.read(client, self._deliver, self.url.v5)
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

    # -- what the client adds (client.MqttClient) ----------------------------------

    def _release_held(self) -> None:
        """The socket is open: send what was published while it opened."""

    def _abandon(self, error: MqttError) -> None:
        """Stopped: fail every publish and subscribe still waiting for the broker."""


def _reason(v5: bool, code: int) -> ReasonCode | None:
    return ReasonCode(PacketTypes.DISCONNECT, identifier=code) if v5 else None
