"""Store-and-forward: no event lost or reordered across a broker outage and an agent
restart (a private Mosquitto that is stopped and started again), and the on-disk
queue itself (bounded, ordered, survives a killed process)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from test_edge_agent import edge_settings

from nattillsyn.app.embedded import PrivateMosquitto, wait_port
from nattillsyn.edge.agent import EdgeAgent
from nattillsyn.edge.sources import Frame, Pacer
from nattillsyn.edge.store import Store
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import TopicKind, Topics


class RestartableMosquitto(PrivateMosquitto):
    """The project's private Mosquitto, stopped and started again on the same port,
    keeping its sessions on disk (as a production broker does)."""

    def start(self, timeout: float = 10.0) -> str:
        self._tmp.mkdir(exist_ok=True)
        conf = self._tmp / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self._tmp}/\n"
            "max_queued_messages 100000\nmax_inflight_messages 100\n"
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port("127.0.0.1", self.port, timeout, self.proc)
        return self.url

    def halt(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)


class BurstSource:
    """Someone moves for 1 s, then nothing moves for 11 s, again and again: a motion
    event (new, then end) every 12 s of source time; at `speed` × real time."""

    def __init__(self, speed: float = 30.0) -> None:
        self._pacer = Pacer(speed)
        self._closed = False
        self.base = np.random.default_rng(2).integers(60, 160, (120, 160)).astype(np.uint8)

    def frames(self) -> Iterator[Frame]:
        i = 0
        while not self._closed:
            t = i / 5.0
            img = self.base.copy()
            phase = t % 12.0
            x = 30 + int(40 * phase) if phase < 1.0 else 70
            img[30:110, x : x + 15] = 10
            self._pacer.wait(t)
            yield Frame(t, img)
            i += 1

    def close(self) -> None:
        self._closed = True
        self._pacer.cancel()


async def _until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_no_event_lost_or_reordered_across_outage_and_restart(tmp_path, test_id) -> None:
    broker = RestartableMosquitto()
    url = broker.start()
    root = f"t{test_id}/nattillsyn"
    # The consumer keeps a persistent session, like ingest: it misses nothing while away.
    consumer = MqttClient(url, f"consumer-{test_id}", clean_start=False, session_expiry_s=600)
    received: list[dict] = []

    async def collect() -> None:
        async for m in consumer.messages():
            received.append(json.loads(m.payload))

    try:
        await consumer.start()
        await consumer.subscribe(Topics(root).subscription(TopicKind.event), qos=1)
        task = asyncio.create_task(collect())
        s = edge_settings(url, root, tmp_path, monitor_without_config=True)

        a = EdgeAgent(s, source=BurstSource)
        await a.start()
        await _until(lambda: len(received) >= 4, 30, "events before the outage")

        broker.halt()  # outage: the agent queues on disk
        before = a.events_created
        await _until(lambda: a.events_created >= before + 4, 30, "events during the outage")
        await a.stop()  # the agent restarts while the broker is still down
        pending_a = [json.loads(q.payload)["id"] for q in Store(tmp_path / _db(s)).peek(10_000)]
        assert len(pending_a) >= 4

        b = EdgeAgent(s, source=BurstSource)
        await b.start()  # starts without a broker
        await _until(lambda: b.events_created >= 4, 30, "events of the new session offline")
        assert len(b.store) >= len(pending_a) + 4

        broker.start()  # back: the queue drains in order
        await _until(lambda: len(b.store) == 0, 60, "queue drained")
        await b.stop()  # a clean stop ends open events and flushes them
        assert len(Store(tmp_path / _db(s))) == 0
        created = a.events_created + b.events_created
        await _until(lambda: len({e["id"] for e in received}) >= created, 30, "all events")
        task.cancel()
    finally:
        await consumer.stop()
        broker.stop()

    unique: list[dict] = []
    seen: set[str] = set()
    for e in received:  # redeliveries keep their id; consumers drop them
        if e["id"] not in seen:
            seen.add(e["id"])
            unique.append(e)
    assert len(unique) == created, (len(unique), created)
    assert set(pending_a) <= seen
    # In creation order: session by session, seq within each.
    keys = [(e["session"], e["seq"]) for e in unique]
    assert keys == sorted(keys)
    assert len({e["session"] for e in unique}) == 2
    # Each event's phases in order: new before end.
    phases: dict[str, list[str]] = {}
    for e in unique:
        phases.setdefault(e["event_id"], []).append(e["phase"])
    for p in phases.values():
        assert p[0] == "new" and p.count("end") <= 1 and (p[-1] == "end" or "end" not in p)


def _db(s) -> str:
    e = s.edge
    return f"edge-{s.site}-{e.room}-{e.device}.sqlite"


# -- the store itself -----------------------------------------------------------------


def test_store_is_ordered_bounded_and_reopens(tmp_path) -> None:
    path = tmp_path / "q.sqlite"
    st = Store(path, max_events=100)
    for i in range(60):
        st.put("t/event", json.dumps({"i": i, "k": "motion"}).encode(), "motion")
        st.put("t/event", json.dumps({"i": i, "k": "fall"}).encode(), "possible_fall")
    assert len(st) == 100 and st.dropped == 20
    items = st.peek(1000)
    kinds = [json.loads(q.payload)["k"] for q in items]
    assert kinds.count("fall") == 60  # motion goes first when full
    assert [q.id for q in items] == sorted(q.id for q in items)
    st.set("config", '{"version": 3}')
    first = items[0]
    st.remove(first.id)
    st.close()
    st2 = Store(path, max_events=100)
    assert len(st2) == 99 and st2.peek(1)[0].id == items[1].id
    assert st2.get("config") == '{"version": 3}'
    assert st2.journal_mode == "wal"
    st2.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


WRITER = """
import sys, json
from pathlib import Path
from nattillsyn.edge.store import Store
st = Store(Path(sys.argv[1]))
i = 0
while True:
    st.put("t/event", json.dumps({"i": i}).encode(), "motion")
    print(i, flush=True)  # acknowledged only after put returned (fsync'd)
    i += 1
"""


def test_store_survives_a_killed_process(tmp_path) -> None:
    """SIGKILL in the middle of writing: every acknowledged event is still there, in order."""
    path = tmp_path / "q.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    acked = -1
    assert proc.stdout is not None
    for line in proc.stdout:
        acked = int(line)
        if acked >= 200:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    st = Store(path)
    got = [json.loads(q.payload)["i"] for q in st.peek(100_000)]
    assert got[: acked + 1] == list(range(acked + 1))
    assert got == list(range(len(got)))


@pytest.mark.parametrize("n", [1, 7])
def test_store_in_memory_without_state_dir(n) -> None:
    st = Store(None)
    ids = [st.put("t", f"{i}".encode(), "motion") for i in range(n)]
    assert [q.id for q in st.peek(n)] == ids
    assert uuid.UUID(int=0)  # keeps the import used
