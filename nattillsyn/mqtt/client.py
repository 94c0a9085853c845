"""`MqttClient`: publish with QoS 1 confirmation, subscribe, receive, manually acknowledge.

The connection underneath (event loop, sockets, reconnects) is `connection.MqttConnection`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from nattillsyn import log
from nattillsyn.mqtt import fastpath
from nattillsyn.mqtt.connection import MqttConnection
from nattillsyn.mqtt.types import UNROUTED, UNROUTED_TEXT, MqttError, MqttUnrouted, Received

logger = log.get(__name__)


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


class MqttClient(MqttConnection):
    """Connect, publish with QoS 1 confirmation, subscribe, receive, manually acknowledge.

    `options`: the connection's (`MqttConnection`: clean_start, session_expiry_s, will,
    manual_ack, receive_maximum, max_inflight, tls, clock)."""

    def __init__(
        self, url: str, client_id: str = "", *, retry_unrouted: bool = False, **options: Any
    ) -> None:
        super().__init__(url, client_id, **options)
        # MQTT 5: a PUBACK "no matching subscribers" (0x10) means nobody got the message,
        # e.g. just after a broker restart, before subscribers are back (Mosquitto does
        # not keep shared subscriptions over a restart). With retry_unrouted, QoS 1
        # publishes are sent again (backing off to 5 s) until a subscriber takes them.
        self._retry_unrouted = retry_unrouted
        self._inbox: deque[Received] = deque()
        self._ready = asyncio.Event()
        self.received = 0  # messages read since start
        self._publishes: dict[int, _Publish] = {}
        self._subscribing: dict[int, asyncio.Future[None]] = {}
        self._held: list[_Publish] = []  # published while paho opens a socket
        self._unrouted = 0  # waiting to be sent again
        self._outstanding_limit: int | None = None
        self._outstanding_below = asyncio.Event()
        self._resends: set[asyncio.Task[None]] = set()  # unrouted publishes waiting to go again
        c = self._client
        c.on_publish = self._handle_publish
        c.on_subscribe = self._handle_subscribe
        c.on_message = self._handle_message

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for p in held:
            try:
                self._send(p)
            except MqttError as exc:
                _set_exc(p.waiter, exc)

    def _abandon(self, error: MqttError) -> None:
        for resend in self._resends:
            resend.cancel()
        for p in [*self._publishes.values(), *self._held]:
            _set_exc(p.waiter, error)
        for fut in self._subscribing.values():
            _set_exc(fut, error)
        self._publishes.clear()
        self._subscribing.clear()
        self._held.clear()

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

    async def _retry_after(self, delay: float, track: _Publish) -> None:
        try:
            await self.clock.sleep(delay)
        except asyncio.CancelledError:
            if self._stopped:  # the client stopped meanwhile: its waiter learns it now
                self._retry(track)
            raise
        self._retry(track)

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
            fastpath.ack_many(self._client, batch)
        return n

    # -- paho callbacks (event loop) ---------------------------------------------

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
            resend = self._loop.create_task(
                self._retry_after(min(0.25 * 2**track.attempt, 5.0), track)
            )
            self._resends.add(resend)
            resend.add_done_callback(self._resends.discard)
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


def _set_result(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


def _set_exc(fut: asyncio.Future[None] | None, exc: BaseException) -> None:
    if fut is not None and not fut.done():
        fut.set_exception(exc)
