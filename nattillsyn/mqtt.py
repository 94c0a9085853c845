"""asyncio wrapper around paho-mqtt's threaded client.

paho runs its network loop in a thread (it reconnects by itself and keeps QoS 1
messages queued while offline); this class hands results and messages over to
the asyncio loop. One instance per service connection.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from nattillsyn import log

logger = log.get(__name__)


class MqttError(RuntimeError):
    pass


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


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    properties: Properties | None = field(default=None, repr=False)


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
        tls: TlsFiles | None = None,
    ) -> None:
        self.url = MqttUrl.parse(url)
        self.client_id = client_id
        self._clean_start = clean_start
        self._session_expiry = session_expiry_s
        self._manual_ack = manual_ack
        self._loop: asyncio.AbstractEventLoop | None = None
        self._messages: asyncio.Queue[Received] = asyncio.Queue()
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._early: set[int] = set()  # confirmed before anybody waited
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
        self._client = paho.Client(**kwargs)
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
        """Disconnect cleanly (the last will is not sent unless asked) and stop the thread."""
        if publish_will and self.url.protocol == paho.MQTTv5:
            props = Properties(PacketTypes.DISCONNECT)
            self._client.disconnect(
                reasoncode=paho.ReasonCode(PacketTypes.DISCONNECT, identifier=4), properties=props
            )
        else:
            self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self.connected.clear()
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for fut in pending:
            if not fut.done():
                fut.set_exception(MqttError("client stopped before the broker confirmed"))

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
    ) -> None:
        """Publish; for QoS > 0 wait until the broker confirmed (PUBACK/PUBCOMP)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise MqttError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        if qos == 0:
            return
        assert self._loop is not None, "start() first"
        fut: asyncio.Future[None] = self._loop.create_future()
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                return
            self._pending[info.mid] = fut
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
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                else:
                    self._ignore.add(info.mid)

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
                self._early.discard(mid)
                return
            self._pending[mid] = fut
        await asyncio.wait_for(fut, timeout)

    async def messages(self) -> AsyncIterator[Received]:
        while True:
            yield await self._messages.get()

    async def next_message(self, timeout: float | None = None) -> Received:
        return await asyncio.wait_for(self._messages.get(), timeout)

    @property
    def backlog(self) -> int:
        return self._messages.qsize()

    def ack(self, msg: Received) -> None:
        """Acknowledge a message received with manual_ack (after it is safely stored)."""
        if self._manual_ack and msg.qos > 0:
            self._client.ack(msg.mid, msg.qos)

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
                self._early.add(mid)
                return
        if error:
            self._call(_set_exc, fut, MqttError(error))
        else:
            self._call(_set_result, fut)

    def _handle_publish(self, client, userdata, mid, reason_code, properties) -> None:
        failed = getattr(reason_code, "is_failure", False)
        self._resolve(mid, f"broker refused publish: {reason_code}" if failed else None)

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
        self._resolve(mid, f"broker refused subscription: {bad}" if bad else None)

    def _handle_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        msg = Received(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            mid=message.mid,
            properties=getattr(message, "properties", None),
        )
        self._call(self._messages.put_nowait, msg)


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
