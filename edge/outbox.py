"""The edge agent's events on their way to the broker.

Each event of the analysis (source-clock seconds) becomes a contract `Event` with wall times
and an event id per lifetime, is encoded once, written to the on-disk queue (`store.Store`)
and published from there in order, one at a time, each removed only after the broker's
PUBACK: nothing is lost or reordered across a broker outage, a restart or a power cut (a
redelivery keeps its message id, consumers dedupe).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from prometheus_client import Counter, Gauge

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.ids import new_id
from nattillsyn.mqtt import MqttClient, MqttError, MqttUnrouted
from nattillsyn.protocol import Event, EventPhase, encode

from .room import EventOut
from .store import Store

logger = log.get(__name__)

EVENTS = Counter("nattillsyn_edge_events_total", "Events produced.", ["device", "type"])
QUEUE = Gauge("nattillsyn_edge_queue_events", "Events waiting on disk for the broker.", ["device"])


class EventOutbox:
    """`ids()` gives the envelope of the next message (site, room, device, session, seq)."""

    def __init__(
        self,
        store: Store,
        mqtt: MqttClient,
        topic: str,
        ids: Callable[[], dict],
        room: str,
        device: str,
        speed: float,
        clock: Clock = SYSTEM,
    ) -> None:
        self.store, self.mqtt, self.topic, self._ids = store, mqtt, topic, ids
        self.room, self.device, self._speed, self._clock = room, device, speed, clock
        self._event_ids: dict[str, tuple[uuid.UUID, datetime]] = {}
        self.wakeup = asyncio.Event()
        self.idle = asyncio.Event()  # set while nothing waits on disk
        self.created = 0
        self.published = 0

    def gauge(self) -> None:
        QUEUE.labels(self.device).set(len(self.store))

    def wall(self, t: float, t_now: float, mono: float) -> datetime:
        """Source time `t` as wall time, given that `t_now` was seen at monotonic `mono`."""
        ago = (t_now - t) / self._speed if self._speed > 0 else 0.0
        ago += self._clock.monotonic() - mono
        return self._clock.now() - timedelta(seconds=max(0.0, ago))

    async def event(self, out: EventOut, t_now: float, mono: float) -> None:
        if out.phase is EventPhase.new or out.key not in self._event_ids:
            self._event_ids[out.key] = (new_id(), self.wall(out.start, t_now, mono))
        event_id, start = self._event_ids[out.key]
        if out.phase is EventPhase.end:
            self._event_ids.pop(out.key, None)
        msg = Event(
            **self._ids(),
            event_id=event_id,
            type=out.type,
            phase=out.phase,
            start=start,
            end=self.wall(out.t, t_now, mono) if out.phase is EventPhase.end else None,
            score=round(min(1.0, max(0.0, out.score)), 3),
            zone=out.zone,
            box=tuple(round(v, 3) for v in out.box) if out.box else None,
        )
        await self._put(msg)
        EVENTS.labels(self.device, out.type.value).inc()
        logger.info(
            "event", type=out.type.value, phase=out.phase.value, room=self.room, device=self.device
        )

    async def end_open_events(self) -> None:
        """Close events still open when the analysis stops (pause, shutdown)."""
        now = self._clock.now()
        for key, (event_id, start) in list(self._event_ids.items()):
            etype = key if key != "fall" else "possible_fall"
            with contextlib.suppress(ValueError):
                msg = Event(
                    **self._ids(),
                    event_id=event_id,
                    type=etype,
                    phase=EventPhase.end,
                    start=start,
                    end=now,
                )
                await self._put(msg)
        self._event_ids.clear()

    async def _put(self, msg: Event) -> None:
        await asyncio.to_thread(self.store.put, self.topic, encode(msg), msg.type.value)
        self.created += 1
        self.idle.clear()
        self.gauge()
        self.wakeup.set()

    async def drain(self) -> None:
        """Publish queued events in order; each leaves the disk only after its PUBACK."""
        unrouted = 0
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while True:
                await self.mqtt.connected.wait()
                items = await asyncio.to_thread(self.store.peek, 1)
                if not items:
                    self.idle.set()
                    break
                item = items[0]
                try:
                    # Kept until a subscriber (ingest) took it: after a broker restart
                    # Mosquitto has forgotten shared subscriptions until workers resubscribe.
                    await self.mqtt.publish(
                        item.topic, item.payload, qos=1, timeout=10, require_subscriber=True
                    )
                except MqttUnrouted:
                    unrouted = min(unrouted + 1, 5)
                    await self._clock.sleep(0.25 * 2**unrouted)  # same item again: order kept
                    continue
                except (MqttError, TimeoutError):
                    await self._clock.sleep(0.5)  # same item again: order is kept
                    continue
                unrouted = 0
                await asyncio.to_thread(self.store.remove, item.id)
                self.published += 1
                self.gauge()
