"""The bridge between the site broker and the central broker (the project's own, not
Mosquitto's: see docs/gateway.md for why).

- **Up** (device kinds: events, states, heartbeats, availability, config and command
  answers): each message is written to the disk spool, then acknowledged to the local
  broker; a forwarder sends the spool in order to the centre, `inflight` at a time, and
  deletes a message only after the central broker's PUBACK. At least once; the centre's
  consumers de-duplicate by message id, so every message is stored exactly once.
- **Down** (server kinds: device configs, commands, alerts, staff actions): published on
  the site broker, then acknowledged upstream (the central broker keeps them queued in the
  gateway's persistent session while the link is down).
- Site-level messages for the gateway itself (the centre's beacon, the configuration
  snapshot, upload answers) go to `on_site` instead of the site broker.
- Staff actions made on the site broker (the gateway's tablet page) go up while the centre
  is in charge; a message the bridge brought down is never sent back up (by message id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.mqtt import MqttClient, Received
from nattillsyn.protocol import TopicKind, Topics
from nattillsyn.protocol.topics import SITE_KINDS, SPEC

from .spool import CLASS_NAMES, Incoming, Spool, SpoolFull, message_class

logger = log.get(__name__)

FORWARDED = Counter("nattillsyn_gateway_forwarded_total", "Messages bridged", ["direction"])
SPOOL_MESSAGES = Gauge("nattillsyn_gateway_spool_messages", "Site messages waiting on disk")
SPOOL_BYTES = Gauge("nattillsyn_gateway_spool_bytes", "Bytes the spool takes (topic + payload)")
SPOOL_LIMIT = Gauge("nattillsyn_gateway_spool_limit_bytes", "Disk bound of the spool")
SPOOL_FILL = Gauge("nattillsyn_gateway_spool_fill_ratio", "Spool bytes / bound")
SPOOL_AGE = Gauge("nattillsyn_gateway_spool_oldest_seconds", "Age of the oldest spooled message")
DROPPED = Counter(
    "nattillsyn_gateway_spool_dropped_total", "Messages dropped by the spool policy", ["cls"]
)
FULL = Counter("nattillsyn_gateway_spool_full_total", "Times the spool refused (backpressure)")

SEEN_DOWN = 4096  # message ids of staff actions brought down, remembered against loops


class Bridge:
    def __init__(
        self,
        topics: Topics,
        site: str,
        local: MqttClient,
        upstream: MqttClient,
        spool: Spool,
        *,
        inflight: int = 200,
        on_site: Callable[[Received], Awaitable[None]] | None = None,
        on_down: Callable[[TopicKind, bytes], None] | None = None,
        up_actions: Callable[[], bool] = lambda: True,
        clock: Clock = SYSTEM,
    ) -> None:
        self.topics = topics
        self.site = site
        self.local = local
        self.upstream = upstream
        self.spool = spool
        self.inflight = inflight
        self.on_site = on_site
        self.on_down = on_down
        self.up_actions = up_actions  # whether local staff actions go to the centre now
        self.clock = clock
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._down_ids: OrderedDict[str, None] = OrderedDict()
        self._tasks: list[asyncio.Task] = []
        self.delivered = 0  # messages the centre confirmed
        SPOOL_LIMIT.set(spool.max_bytes)

    # -- topics ------------------------------------------------------------------------

    def filters(self, sender: str) -> list[str]:
        return sorted(
            {
                self.topics.subscription(kind, self.site)
                for kind, spec in SPEC.items()
                if spec.sender == sender and kind not in SITE_KINDS
            }
        )

    def local_filters(self) -> list[str]:
        return [*self.filters("device"), self.topics.subscription(TopicKind.alert_set, self.site)]

    def upstream_filters(self) -> list[str]:
        site_kinds = [
            self.topics.site(self.site, k)
            for k in (TopicKind.centre, TopicKind.gateway_config, TopicKind.gateway_sync_ack)
        ]
        return [*self.filters("server"), *site_kinds]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._wake.set()  # whatever waited on disk from before a restart goes first
        self._tasks = [
            asyncio.create_task(self._up(), name="gw-up"),
            asyncio.create_task(self._forward(), name="gw-forward"),
            asyncio.create_task(self._down(), name="gw-down"),
        ]
        self.upstream.on_connect(self._wake.set)
        self._update_metrics()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def backlog(self) -> int:
        return self.spool.count

    async def drained(self, timeout: float | None = None) -> bool:
        """Wait until the spool is empty (True) or the timeout passed (False)."""
        try:
            async with asyncio.timeout(timeout):
                while self.spool.count:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            return False
        return True

    # -- up: site broker → spool -----------------------------------------------------------

    async def _up(self) -> None:
        while True:
            batch = [await self.local.next_message()]
            while self.local.backlog and len(batch) < 1000:
                batch.append(await self.local.next_message())
            spooled: list[Incoming] = []
            actions: list[Received] = []
            for msg in batch:
                parsed = self.topics.parse(msg.topic)
                kind = parsed.kind if parsed else None
                if kind is TopicKind.alert_set:
                    actions.append(msg)
                    continue
                spooled.append(
                    Incoming(msg.topic, msg.payload, msg.retain, message_class(kind, msg.payload))
                )
            await self._store(spooled)
            for msg in actions:
                await self._action_up(msg)
            for msg in batch:
                self.local.ack(msg)
            if spooled:
                self._wake.set()

    async def _store(self, items: list[Incoming]) -> None:
        delay = 0.5
        while True:
            try:
                dropped_before = dict(self.spool.dropped)
                await asyncio.to_thread(self.spool.put_many, items)
                for cls, n in self.spool.dropped.items():
                    if n > dropped_before.get(cls, 0):
                        DROPPED.labels(CLASS_NAMES[cls]).inc(n - dropped_before.get(cls, 0))
                self._update_metrics()
                return
            except SpoolFull as exc:
                # Backpressure: the local broker (and the devices' own disks) hold the rest.
                FULL.inc()
                logger.error("spool full; holding back site messages", error=str(exc))
                await self.clock.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _action_up(self, msg: Received) -> None:
        mid = _message_id(msg.payload)
        if mid is not None and mid in self._down_ids:
            return  # brought down by us: never back up
        if not self.up_actions() or not self.upstream.connected.is_set():
            return  # the gateway alerts on site now: the action is its own
        with contextlib.suppress(Exception):
            await self.upstream.publish(msg.topic, msg.payload, qos=1, timeout=10)
            FORWARDED.labels("up").inc()

    # -- spool → centre ----------------------------------------------------------------------

    async def _forward(self) -> None:
        while True:
            await self.upstream.connected.wait()
            items = await asyncio.to_thread(self.spool.peek, 0, self.inflight)
            if not items:
                self._idle.set()
                self._wake.clear()
                if self.spool.count == 0:
                    await self._wake.wait()
                continue
            # Publish the window, then wait for every PUBACK; a broken link leaves the rest
            # on disk (paho sends the unconfirmed ones again in the resumed session).
            waits = [
                self.upstream.publish(
                    i.topic,
                    i.payload,
                    qos=1,
                    retain=i.retain,
                    timeout=None,
                    require_subscriber=self._stored_centrally(i.topic),
                )
                for i in items
            ]
            results = await asyncio.gather(*waits, return_exceptions=True)
            done = [i.id for i, r in zip(items, results, strict=True) if r is None]
            failed = [r for r in results if r is not None]
            await asyncio.to_thread(self.spool.remove, done)
            self.delivered += len(done)
            FORWARDED.labels("up").inc(len(done))
            self._update_metrics()
            if failed:
                # Kept on disk and sent again (MqttUnrouted: nobody at the centre took it yet).
                logger.warning("centre did not take messages; retrying", error=str(failed[0]))
                await self.clock.sleep(1.0)

    def _stored_centrally(self, topic: str) -> bool:
        """The centre's ingest stores this kind: a PUBACK "no matching subscribers" (ingest
        not subscribed yet, e.g. just after a central broker restart) is not delivery."""
        parsed = self.topics.parse(topic)
        return parsed is not None and parsed.kind is not TopicKind.command_response

    # -- down: centre → site broker -------------------------------------------------------------

    async def _down(self) -> None:
        async for msg in self.upstream.messages():
            parsed = self.topics.parse(msg.topic)
            kind = parsed.kind if parsed else None
            try:
                if kind in SITE_KINDS:
                    if self.on_site is not None:
                        await self.on_site(msg)
                else:
                    if kind is TopicKind.alert_set:
                        mid = _message_id(msg.payload)
                        if mid is not None:
                            self._down_ids[mid] = None
                            while len(self._down_ids) > SEEN_DOWN:
                                self._down_ids.popitem(last=False)
                    await self.local.publish(
                        msg.topic, msg.payload, qos=1, retain=msg.retain, timeout=None
                    )
                    FORWARDED.labels("down").inc()
                    if self.on_down is not None and kind is not None:
                        self.on_down(kind, msg.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("down message failed", topic=msg.topic)
            self.upstream.ack(msg)

    def _update_metrics(self) -> None:
        SPOOL_MESSAGES.set(self.spool.count)
        SPOOL_BYTES.set(self.spool.bytes)
        SPOOL_FILL.set(self.spool.fill_ratio)


def _message_id(payload: bytes) -> str | None:
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return str(json.loads(payload).get("id"))
    return None


__all__ = ["Bridge"]
