"""The ingest benchmark's child processes, on the raw-socket MQTT 5 of bench.ingest_wire:

- `publisher`: simulated devices on `--connections` connections, each with at most
  `--window` unacknowledged QoS 1 publishes (never more than the broker's receive
  maximum from its CONNACK); as fast as the windows allow or paced at `--rate`. It
  reconnects after a broker restart (resuming its session) and resends what was not
  acknowledged with the DUP flag. It replays one valid message in `--replay-every` as a
  new publish (what an edge queue does after a lost acknowledgement), so ingest's
  idempotency is exercised in every run. Message ids are `<run>-<publisher>-...`.
- `ceiling`: a consumer that only receives, acknowledges (PUBACK per message) and
  counts, on the same kind of shared subscription as ingest's workers.

Both talk to the runner by lines: "ready" on stdout, "go" on stdin, one JSON at the end.
(`python -m bench.ingest_load --role …`, started by bench.ingest_phases.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import socket
import sys
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from bench import ingest_wire as wire
from bench.ingest_args import parse

SITE = "site-1"
SESSION_EXPIRY_S = 600


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Devices:
    """Messages of some simulated devices, a realistic mix: per 20 messages of a device
    14 events (new/update/update/end with one event_id, some possible falls), 4 room
    states, 2 heartbeats. Message `invalid_every - 1` (mod `invalid_every`) is malformed
    in one of four ways, each payload unique so a dead letter can be matched by hash.
    `ts` is the time the message is made, just before it is sent (to the millisecond)."""

    PATTERN = "eeeeseeeehseeeeseees"
    STATES = ("in_bed", "out_of_bed", "in_bed", "in_chair", "in_bathroom", "in_bed")
    BAD = ("json", "version", "type", "sender")

    def __init__(self, root: str, devices: list[int], run: int, pub: int, invalid_every: int):
        self.devices = devices
        self.prefix = f"{run:08x}-{pub:04x}-7000-8000-"
        self.invalid_every = invalid_every
        self.k = 0
        self.counter = 0
        self.session = int(time.time() * 1000)
        n = len(devices)
        self.seq = [0] * n
        self.phase = [0] * n
        self.event_id = [str(uuid.uuid4()) for _ in range(n)]
        self.start = [""] * n
        self.topics = [
            {
                kind: f"{root}/{SITE}/rum-{d}/cam-{d}/{kind}".encode()
                for kind in ("event", "state", "heartbeat")
            }
            for d in devices
        ]
        self._ts_at = 0.0
        self._ts = ""

    def next(self) -> tuple[bytes, bytes, str]:
        """(topic, payload, kind); kind is event, state, heartbeat or bad."""
        k = self.k
        self.k += 1
        j = k % len(self.devices)
        d = self.devices[j]
        now = time.time()
        if now - self._ts_at >= 0.001:
            self._ts_at, self._ts = now, _iso(now)
        ts = self._ts
        self.counter += 1
        self.seq[j] += 1
        seq = self.seq[j]
        head = (
            f'"v":1,"id":"{self.prefix}{self.counter:012x}","ts":"{ts}","site":"{SITE}",'
            f'"room":"rum-{d}","device":"cam-{d}","session":{self.session},"seq":{seq}'
        )
        every = self.invalid_every
        if every and k % every == every - 1:
            bad = self.BAD[(k // every) % len(self.BAD)]
            topic = self.topics[j]["event"]
            if bad == "json":  # cut short: not JSON
                return topic, f'{{{head},"event_id":'.encode(), "bad"
            if bad == "version":
                return topic, ("{" + head.replace('"v":1', '"v":7', 1) + "}").encode(), "bad"
            if bad == "type":
                return topic, f'{{{head},"event_id":"x","type":1,"phase":"new"}}'.encode(), "bad"
            other = self.topics[(j + 1) % len(self.devices)]["state"]
            if other == self.topics[j]["state"]:  # one device: a room that is not its own
                other = other.replace(b"/rum-", b"/annat-rum-", 1)
            body = f'{{{head},"state":"in_bed","since":"{ts}","confidence":0.9}}'
            return other, body.encode(), "bad"
        kind = self.PATTERN[(seq - 1) % len(self.PATTERN)]
        if kind == "e":
            phase = ("new", "update", "update", "end")[self.phase[j]]
            if phase == "new":
                self.event_id[j] = str(uuid.uuid4())
                self.start[j] = ts
            self.phase[j] = (self.phase[j] + 1) % 4
            etype = "possible_fall" if seq % 97 == 0 else "motion"
            end = f',"end":"{ts}"' if phase == "end" else ""
            body = (
                f'{{{head},"event_id":"{self.event_id[j]}","type":"{etype}","phase":"{phase}",'
                f'"start":"{self.start[j] or ts}"{end},"score":0.{seq % 10},"zone":"bed",'
                f'"box":[0.1,0.2,0.3,0.4]}}'
            )
            return self.topics[j]["event"], body.encode(), "event"
        if kind == "s":
            state = self.STATES[seq % len(self.STATES)]
            body = (
                f'{{{head},"state":"{state}","since":"{ts}","confidence":0.8{seq % 10},'
                f'"motion":0.0{seq % 10}}}'
            )
            return self.topics[j]["state"], body.encode(), "state"
        body = (
            f'{{{head},"uptime_s":{seq * 15},"fps":5.0,"agent_version":"0.1.0",'
            f'"config_version":1,"queue":0,"monitoring":true}}'
        )
        return self.topics[j]["heartbeat"], body.encode(), "heartbeat"


class Link:
    """One publishing connection: a window of unacknowledged QoS 1 publishes.

    Its session is persistent from the first CONNECT (clean start off, a client id of
    this run only): Mosquitto 2.0 saves only such sessions over a restart. After a
    reconnect what was not acknowledged is sent again with DUP set. A PUBACK "no
    matching subscribers" (0x10: after a broker restart, until ingest has subscribed
    again, since Mosquitto does not keep shared subscriptions) means the message went
    nowhere: it is published again after 0.25 s, doubling up to 5 s, as the edge does."""

    def __init__(self, url: str, client_id: str, window: int) -> None:
        self.url = url
        self.client_id = client_id
        self.want_window = window
        self.window = window
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        # packet id -> (packet, topic, payload, attempt)
        self.outstanding: dict[int, tuple[bytes, bytes, bytes, int]] = {}
        self.unrouted: deque[tuple[float, bytes, bytes, int]] = deque()
        self.next_mid = 0
        self.acked = 0
        self.resent = 0
        self.unrouted_resent = 0
        self.refused = 0
        self.reconnects = 0
        self.resumed = 0  # reconnects that found their session on the broker
        self.retry_at = 0.0
        self.connected_once = False

    def connect(self) -> bool:
        try:
            sock, ack, rest = wire.connect(
                self.url,
                self.client_id,
                clean_start=False,
                session_expiry=SESSION_EXPIRY_S,
                timeout=2.0,
            )
        except OSError:
            self.retry_at = time.monotonic() + 0.1
            return False
        if self.connected_once:
            self.reconnects += 1
            self.resumed += ack.session_present
        self.connected_once = True
        self.window = max(1, min(self.want_window, ack.receive_maximum))
        sock.setblocking(False)
        self.sock, self.buf = sock, rest
        if self.outstanding:  # not acknowledged before the connection went: again, DUP set
            data = b"".join(bytes([p[0] | wire.DUP]) + p[1:] for p, *_ in self.outstanding.values())
            self.resent += len(self.outstanding)
            if not self.write(data):
                return False
        self.read()
        return self.sock is not None

    def lost(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
        self.retry_at = time.monotonic() + 0.1

    def write(self, data: bytes) -> bool:
        assert self.sock is not None
        view = memoryview(data)
        try:
            while view:
                try:
                    n = self.sock.send(view)
                    view = view[n:]
                except BlockingIOError:
                    select.select([], [self.sock], [], 1.0)
        except OSError:
            self.lost()
            return False
        return True

    @property
    def free(self) -> int:
        return self.window - len(self.outstanding) if self.sock is not None else 0

    @property
    def pending(self) -> int:
        return len(self.outstanding) + len(self.unrouted)

    def send(self, items: list[tuple[bytes, bytes]], attempt: int = 0) -> None:
        parts = []
        for topic, payload in items:
            mid = self.next_mid = self.next_mid % 65535 + 1
            while mid in self.outstanding:
                mid = self.next_mid = self.next_mid % 65535 + 1
            p = wire.publish_packet(topic, payload, mid)
            self.outstanding[mid] = (p, topic, payload, attempt)
            parts.append(p)
        self.write(b"".join(parts))

    def send_unrouted(self, now: float) -> None:
        """Publish again the unrouted messages that are due (they take window slots)."""
        while self.unrouted and self.unrouted[0][0] <= now and self.free > 0:
            _due, topic, payload, attempt = self.unrouted.popleft()
            self.unrouted_resent += 1
            self.send([(topic, payload)], attempt)

    def read(self) -> None:
        if self.sock is None:
            return
        try:
            while True:
                chunk = self.sock.recv(262144)
                if not chunk:
                    self.lost()
                    return
                self.buf += chunk
                if len(chunk) < 262144:
                    break
        except BlockingIOError:
            pass
        except OSError:
            self.lost()
            return
        packets, used = wire.parse(self.buf)
        buf = self.buf
        now = time.monotonic()
        for first, start, end in packets:
            if first & 0xF0 == wire.PUBACK:
                mid = (buf[start] << 8) | buf[start + 1]
                reason = buf[start + 2] if end - start > 2 else 0
                sent = self.outstanding.pop(mid, None)
                if sent is None:
                    continue
                if reason == wire.NO_MATCHING_SUBSCRIBERS:
                    _p, topic, payload, attempt = sent
                    delay = min(0.25 * 2**attempt, 5.0)
                    self.unrouted.append((now + delay, topic, payload, attempt + 1))
                elif reason >= 0x80:
                    self.refused += 1
                else:
                    self.acked += 1
            elif first == wire.DISCONNECT:
                self.lost()
                return
        del buf[:used]


def publisher(args) -> None:
    """Child process: publish until the deadline, then until every publish is acknowledged."""
    p, npub = args.publisher, args.publishers
    mine = [d for d in range(args.devices) if d % npub == p] or [p]
    nconn = max(1, min(args.connections, len(mine)))
    links, gens = [], []
    for c in range(nconn):
        link = Link(args.url, f"bench-pub-{args.run:x}-{p}-{c}", args.window)
        if not link.connect():
            raise SystemExit(f"publisher {p}: cannot connect to {args.url}")
        links.append(link)
        gens.append(Devices(args.root, mine[c::nconn], args.run, p * 64 + c, args.invalid_every))
    print(json.dumps({"ready": True, "window": links[0].window}), flush=True)
    sys.stdin.readline()  # go
    counts = {"event": 0, "state": 0, "heartbeat": 0, "bad": 0, "replay": 0}
    bad_hashes: list[str] = []
    recent: deque[tuple[bytes, bytes]] = deque(maxlen=64)
    rate = args.rate / npub if args.rate else 0.0
    sent = 0
    t_first = time.time()
    t0 = time.monotonic()
    deadline = t0 + args.seconds
    replay_every = args.replay_every
    # Flow control by the runner: while the file `--pause` exists (ingest's backlog is
    # above its high-water mark) nothing new is made; `--progress` tells it what was acked.
    paused, paused_s, last, next_check = False, 0.0, t0, t0
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        if paused:
            paused_s += now - last
            t0 += now - last  # paced: no catching up afterwards
        last = now
        if args.pause and now >= next_check:
            next_check = now + 0.1
            paused = os.path.exists(args.pause)
            _report(Path(args.progress), sum(link.acked for link in links), 0, paused_s)
        if rate:
            quota = 0 if paused else int(rate * (now - t0)) - sent
        else:
            quota = 0 if paused else 1 << 30
        for link, gen in zip(links, gens, strict=True):
            if link.sock is None:
                if now >= link.retry_at:
                    link.connect()
                continue
            link.send_unrouted(now)
            n = min(link.free, quota, 256)
            if n <= 0:
                continue
            items = []
            for _ in range(n):
                if replay_every and sent % replay_every == replay_every - 1 and recent:
                    items.append(recent[0])  # an earlier message again, a new publish
                    counts["replay"] += 1
                else:
                    topic, payload, kind = gen.next()
                    counts[kind] += 1
                    if kind == "bad":
                        bad_hashes.append(hashlib.sha256(payload).hexdigest())
                    else:
                        recent.append((topic, payload))
                    items.append((topic, payload))
                sent += 1
            quota -= n
            link.send(items)
        socks = [link.sock for link in links if link.sock is not None]
        if paused:
            wait = 0.02
        elif rate and quota <= 0:
            wait = max(0.0, min(0.005, t0 + (sent + 1) / rate - time.monotonic()))
        elif any(link.free > 0 for link in links):
            wait = 0.0
        else:
            wait = 0.05
        if socks:
            readable, _w, _x = select.select(socks, [], [], wait)
            for link in links:
                if link.sock is not None and link.sock in readable:
                    link.read()
        elif wait:
            time.sleep(wait)
    t_last = time.time()
    drain_until = time.monotonic() + args.drain_timeout
    while any(link.pending for link in links) and time.monotonic() < drain_until:
        now = time.monotonic()
        for link in links:
            if link.sock is None and link.pending and now >= link.retry_at:
                link.connect()
            if link.sock is not None:
                link.send_unrouted(now)
        socks = [link.sock for link in links if link.sock is not None and link.outstanding]
        if socks:
            readable, _w, _x = select.select(socks, [], [], 0.05)
            for link in links:
                if link.sock is not None and link.sock in readable:
                    link.read()
        else:
            time.sleep(0.05)
    for link in links:
        if link.sock is not None:
            link.write(wire.DISCONNECT_PACKET)
            link.lost()
    t = os.times()
    print(
        json.dumps(
            {
                "counts": counts,
                "sent": sent,
                "acked": sum(link.acked for link in links),
                "unacked": sum(link.pending for link in links),
                "resent_dup": sum(link.resent for link in links),
                "unrouted_resent": sum(link.unrouted_resent for link in links),
                "refused": sum(link.refused for link in links),
                "reconnects": sum(link.reconnects for link in links),
                "sessions_resumed": sum(link.resumed for link in links),
                "window": min(link.window for link in links),
                "t_first": t_first,
                "t_last": t_last,
                "paused_s": paused_s,
                "cpu": t.user + t.system,
                "bad_hashes": bad_hashes,
                "gens": [[g.prefix, g.counter, g.invalid_every] for g in gens],
            }
        ),
        flush=True,
    )


def _report(path: Path, n: int, dup: int, last: float) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{n} {dup} {last}")
    tmp.replace(path)  # atomic: the runner never reads half a line


def ceiling(args) -> None:
    """Child process: receive, PUBACK each QoS 1 message, count; report 10 times a second."""
    sock, _ack, buf = wire.connect(
        args.url,
        f"bench-ceiling-{args.run:x}-{args.worker}",
        clean_start=True,
        session_expiry=0,
        receive_maximum=args.receive_maximum,
    )
    wire.subscribe(sock, buf, f"$share/bench-ceiling/{args.root}/#")
    out = Path(args.out)
    n = dup = 0
    last = 0.0
    _report(out, 0, 0, 0.0)
    print("ready", flush=True)
    sock.settimeout(0.1)
    next_report = time.monotonic() + 0.1
    while True:
        try:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
        except TimeoutError:
            pass
        packets, used = wire.parse(buf)
        if packets:
            acks = []
            for first, start, _end in packets:
                if first & 0xF0 == wire.PUBLISH:
                    n += 1
                    dup += (first & wire.DUP) >> 3
                    if first & 0x06:
                        at = start + 2 + ((buf[start] << 8) | buf[start + 1])
                        acks.append(b"\x40\x02" + buf[at : at + 2])
            if acks:
                sock.sendall(b"".join(acks))
            last = time.time()
            del buf[:used]
        now = time.monotonic()
        if now >= next_report:
            next_report = now + 0.1
            _report(out, n, dup, last)
    _report(out, n, dup, last)


def main(argv: list[str] | None = None) -> int:
    """A child process of the ingest benchmark (`--role publisher|ceiling`)."""
    args = parse(argv)
    if args.role == "publisher":
        publisher(args)
    elif args.role == "ceiling":
        with contextlib.suppress(KeyboardInterrupt):
            ceiling(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
