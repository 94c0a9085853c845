# ruff: noqa: ASYNC110, ASYNC220, ASYNC230 - a benchmark driver: polls and spawns by design
"""10,000 rooms over the loopback: where is the first bottleneck of one central installation?

    python -m bench.scale --json                  # default: ramp to 10,000 rooms, then speed up
    python -m bench.scale --rooms 2000 --steps 1,2 --step-s 20 --json   # a quick look

Everything runs on this machine: a private Mosquitto started from the project's
`deploy/mosquitto/mosquitto.conf` (listener and paths moved to a temp folder), a private
PostgreSQL (or TimescaleDB when installed), the real `nattillsyn ingest` and
`nattillsyn alerting` as separate processes, and a load generator holding one MQTT
connection per room (a minimal MQTT 3.1.1 QoS 1 publisher on asyncio, so 10,000
connections fit in one process).

Each room behaves like a room device at night: a retained `availability` on connect (and a
last will), a heartbeat every 15 s, a retained state every 60 s and a motion event
(`new` then `end`) every 10 minutes on average. That is 0.09 messages/s per room, about 900
messages/s for 10,000 rooms. A possible fall is injected every few seconds in one of the 40
rooms of the first care home (which has residents with monitoring active) and its alert is
timed from the event's source time to the alert arriving on MQTT; a staff client resolves
it so the next fall raises a new one.

Phase 1 ramps the number of rooms at real-time rates; phase 2 keeps all rooms and multiplies
the message rate (`--steps`) until the installation stops keeping up (stored < 95 % of
offered, or source-to-commit p95 above 2 s: a growing backlog). Per step it reports offered and stored
messages/s, source-to-commit latency (from the database's `received_at - ts`), alert
latency, and the CPU share of each process (of one core; the machine has 2).

Reference, in the same run: the same rooms and rates against the same broker with
`mosquitto_sub` (C, QoS 1) as the only consumer — what the broker and generator sustain
without the project's pipeline. Ratio = project stored msg/s ÷ reference delivered msg/s at
the reference step (1.0: the pipeline keeps up with everything the broker delivers).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from nattillsyn.app.embedded import PrivatePostgres, free_port, wait_port
from nattillsyn.ids import new_id

REPO = Path(__file__).resolve().parents[1]
BROKER_CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
ROOMS_PER_SITE = 40
HEARTBEAT_S, STATE_S, EVENT_S = 15.0, 60.0, 600.0
STATES = ("in_bed", "in_bed", "in_bed", "out_of_bed", "in_bathroom", "empty")


def per_room_rate() -> float:
    return 1 / HEARTBEAT_S + 1 / STATE_S + 2 / EVENT_S


# -- a minimal MQTT 3.1.1 publisher (QoS 1) ------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


class Room(asyncio.Protocol):
    """One room device's connection: CONNECT with a will, QoS 1 PUBLISH, counts PUBACKs."""

    def __init__(self, gen: Generator, index: int) -> None:
        self.gen = gen
        self.i = index
        self.site = f"site-{index // ROOMS_PER_SITE}"
        self.room = f"rum-{index}"
        self.device = f"edge-{index}"
        self.prefix = f"{gen.root}/{self.site}/{self.room}/{self.device}/"
        self.session = int(time.time() * 1000)
        self.seq = 0
        self.mid = 0
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.connected = asyncio.get_running_loop().create_future()
        self.state = random.choice(STATES)

    def connection_made(self, transport) -> None:
        self.transport = transport
        will = self._body("availability", '"state":"offline"')
        flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, will, will QoS 1, will retain
        var = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", 120)
        payload = _str(f"bench-{self.gen.root}-{self.i}") + _str(self.prefix + "availability")
        payload += _str(will)
        body = var + payload
        transport.write(bytes([0x10]) + _varint(len(body)) + body)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 2:
            n, mult, pos = 0, 1, 1
            while True:
                if pos >= len(self.buf):
                    return
                b = self.buf[pos]
                n += (b & 0x7F) * mult
                mult *= 128
                pos += 1
                if not b & 0x80:
                    break
            if len(self.buf) < pos + n:
                return
            kind = self.buf[0] >> 4
            self.buf = self.buf[pos + n :]
            if kind == 4:  # PUBACK
                self.gen.acked += 1
            elif kind == 2 and not self.connected.done():  # CONNACK
                self.connected.set_result(None)

    def connection_lost(self, exc) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"room {self.i}: {exc}"))
        self.gen.lost += 1 if not self.gen.closing else 0

    def _body(self, kind: str, fields: str) -> bytes:
        seq = self.seq
        self.seq += 1
        now = datetime.now(UTC).isoformat()
        return (
            f'{{"v":1,"id":"{new_id()}","ts":"{now}","site":"{self.site}","room":"{self.room}",'
            f'"device":"{self.device}","session":{self.session},"seq":{seq},{fields}}}'
        ).encode()

    def publish(self, kind: str, fields: str, retain: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.mid = self.mid % 65535 + 1
        topic = _str(self.prefix + kind)
        body = topic + struct.pack("!H", self.mid) + self._body(kind, fields)
        self.transport.write(bytes([0x32 | (1 if retain else 0)]) + _varint(len(body)) + body)
        self.gen.sent += 1

    def heartbeat(self) -> None:
        up = time.time() - self.session / 1000
        self.publish(
            "heartbeat", f'"uptime_s":{up:.1f},"fps":5.0,"agent_version":"bench","queue":0'
        )

    def room_state(self) -> None:
        self.state = random.choice(STATES)
        now = datetime.now(UTC).isoformat()
        self.publish(
            "state", f'"state":"{self.state}","since":"{now}","confidence":0.8', retain=True
        )

    def event(self, kind: str, phase: str, event_id: str, start: str, score: float) -> None:
        end = f',"end":"{datetime.now(UTC).isoformat()}"' if phase == "end" else ""
        self.publish(
            "event",
            f'"event_id":"{event_id}","type":"{kind}","phase":"{phase}","start":"{start}",'
            f'"score":{score}{end}',
        )

    def close(self) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.write(b"\xe0\x00")  # DISCONNECT: no last will
            self.transport.close()


class Generator:
    """Rooms spread evenly over time: each tick sends the share of messages due."""

    def __init__(self, host: str, port: int, root: str) -> None:
        self.host, self.port, self.root = host, port, root
        self.rooms: list[Room] = []
        self.sent = self.acked = self.lost = 0
        self.closing = False
        self.speed = 1.0
        self.falls: dict[str, float] = {}  # event_id -> source time
        self._pending_ends: list[tuple[float, Room, str, str]] = []

    async def connect(self, n: int, concurrency: int = 200) -> None:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                room = Room(self, i)
                await loop.create_connection(lambda: room, self.host, self.port)
                await asyncio.wait_for(room.connected, 30)
                room.publish("availability", '"state":"online"', retain=True)
                self.rooms.append(room)

        await asyncio.gather(*(one(i) for i in range(len(self.rooms), n)))

    async def run(self, seconds: float, fall_every_s: float | None = None) -> None:
        tick = 0.1
        carry = {"hb": 0.0, "st": 0.0, "ev": 0.0}
        cursor = {"hb": 0, "st": 0, "ev": 0}
        next_fall = time.monotonic() + 1.0
        end = time.monotonic() + seconds
        nxt = time.monotonic()
        while time.monotonic() < end:
            n = len(self.rooms)
            for key, interval in (("hb", HEARTBEAT_S), ("st", STATE_S), ("ev", EVENT_S)):
                carry[key] += n * tick * self.speed / interval
                due = int(carry[key])
                carry[key] -= due
                for _ in range(due):
                    room = self.rooms[cursor[key] % n]
                    cursor[key] += 1
                    if key == "hb":
                        room.heartbeat()
                    elif key == "st":
                        room.room_state()
                    else:
                        eid, start = str(new_id()), datetime.now(UTC).isoformat()
                        room.event("motion", "new", eid, start, 0.4)
                        self._pending_ends.append(
                            (time.monotonic() + 10 / self.speed, room, eid, start)
                        )
            now = time.monotonic()
            while self._pending_ends and self._pending_ends[0][0] <= now:
                _, room, eid, start = self._pending_ends.pop(0)
                room.event("motion", "end", eid, start, 0.4)
            if fall_every_s and now >= next_fall:
                next_fall = now + fall_every_s
                room = self.rooms[random.randrange(min(ROOMS_PER_SITE, n))]
                eid, start = str(new_id()), datetime.now(UTC).isoformat()
                self.falls[eid] = time.time()
                room.event("possible_fall", "new", eid, start, 0.9)
            nxt += tick
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    def close(self) -> None:
        self.closing = True
        for r in self.rooms:
            r.close()


# -- processes, CPU and the database ------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = [pid]
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
    return out


def postmaster_pid(url: str) -> int:
    """The server process of a database given by URL (on this machine): its backend's parent."""
    with psycopg.connect(url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_broker(tmp: Path) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    lines = []
    for line in BROKER_CONF.read_text().splitlines():
        key = line.split("#", 1)[0].strip().split(" ", 1)[0]
        if key in ("listener", "password_file", "acl_file", "persistence_location", "user"):
            continue
        if key == "allow_anonymous":
            line = "allow_anonymous true"
        lines.append(line)
    lines += [f"listener {port} 127.0.0.1", f"persistence_location {tmp}/"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = tmp / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [exe, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_port("127.0.0.1", port, 10, proc)
    return proc, port


def stored(conn: psycopg.Connection, since: datetime) -> int:
    """Messages with a source time from `since` on that are committed (BRIN/hypertable on ts)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM events WHERE ts >= %(s)s)"
        " + (SELECT count(*) FROM room_states WHERE ts >= %(s)s)"
        " + (SELECT count(*) FROM heartbeats WHERE ts >= %(s)s)",
        {"s": since},
    ).fetchone()
    return int(row[0])


def latency(conn: psycopg.Connection, since: datetime) -> tuple[float | None, float | None]:
    row = conn.execute(
        """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d),
                  percentile_cont(0.95) WITHIN GROUP (ORDER BY d)
           FROM (SELECT extract(epoch FROM received_at - ts) AS d FROM heartbeats
                 WHERE received_at >= %s) x""",
        (since,),
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def seed(url: str, rooms: int) -> None:
    sites = (rooms + ROOMS_PER_SITE - 1) // ROOMS_PER_SITE
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (id, name) SELECT 'site-' || s, 'Boende ' || s "
            "FROM generate_series(0, %s) s ON CONFLICT DO NOTHING",
            (sites - 1,),
        )
        conn.execute(
            "INSERT INTO rooms (site_id, id, name) SELECT 'site-' || (i / %s), 'rum-' || i, "
            "'Rum ' || i FROM generate_series(0, %s) i ON CONFLICT DO NOTHING",
            (ROOMS_PER_SITE, rooms - 1),
        )
        # Residents with monitoring active round the clock (the benchmark runs at any hour)
        # in the first care home, where falls are injected.
        conn.execute(
            "INSERT INTO residents (site_id, room_id, display_name, monitoring_active, "
            "monitor_from, monitor_to) "
            "SELECT 'site-0', 'rum-' || i, 'Boende ' || i, true, '00:00', '00:00' "
            "FROM generate_series(0, %s) i",
            (ROOMS_PER_SITE - 1,),
        )


class Services:
    def __init__(self, db_url: str, mqtt_url: str, root: str, tmp: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NATTILLSYN_")}
        self.env |= {
            "NATTILLSYN_DATABASE_URL": db_url,
            "NATTILLSYN_MQTT_URL": mqtt_url,
            "NATTILLSYN_TOPIC_ROOT": root,
            "NATTILLSYN_LOG__JSON": "true",
            "NATTILLSYN_LOG__LEVEL": "WARNING",
        }
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, tag: str | None = None, **env: str) -> None:
        tag = tag or name
        log = open(self.tmp / f"{tag}.log", "wb")  # noqa: SIM115 - the child's for its life
        self.procs[tag] = subprocess.Popen(
            [sys.executable, "-m", "nattillsyn.app.cli", name],
            env=self.env | env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


async def alert_watcher(mqtt_url: str, root: str, gen: Generator, lat: list[float]) -> None:
    """A staff client: time each fall's alert, then resolve it so the room can alert again."""
    from nattillsyn.mqtt import MqttClient

    c = MqttClient(mqtt_url, f"bench-staff-{root}")
    await c.start()
    await c.subscribe(f"{root}/+/+/alert")
    try:
        async for msg in c.messages():
            a = json.loads(msg.payload)
            src = a.get("source_event")
            if a.get("status") == "firing" and src in gen.falls:
                lat.append(time.time() - gen.falls.pop(src))
                action = {
                    "v": 1,
                    "id": str(new_id()),
                    "ts": datetime.now(UTC).isoformat(),
                    "alert_id": a["alert_id"],
                    "action": "resolve",
                    "by": "bench",
                    "outcome": "false_alarm",
                }
                c.publish_nowait(msg.topic + "/set", json.dumps(action).encode())
    finally:
        await c.stop()


def keeps_up(row: dict) -> bool:
    """Stored within 5 s of the step, and source-to-commit p95 within 2 s (no growing backlog)."""
    return row["stored_share"] >= 0.95 and (row["e2e_p95_s"] or 0) <= 2.0


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def measure_step(gen, seconds, conn, pids, fall_every, lat, label) -> dict:
    cpu0 = {k: cpu_seconds(v()) for k, v in pids.items()}
    since = datetime.now(UTC)
    sent0, t0 = gen.sent, time.monotonic()
    lat.clear()
    await gen.run(seconds, fall_every)
    sent = gen.sent - sent0
    # What was published in the step and committed within 5 s after it (polled, bounded).
    deadline = time.monotonic() + 5
    got = stored(conn, since)
    while time.monotonic() < deadline and got < sent * 0.995:
        await asyncio.sleep(0.25)
        got = stored(conn, since)
    dt = time.monotonic() - t0
    p50, p95 = latency(conn, since)
    row = {
        "step": label,
        "rooms": len(gen.rooms),
        "speed": gen.speed,
        "offered_msg_s": round(sent / seconds, 1),
        "stored_msg_s": round(got / dt, 1),
        "stored_share": round(got / sent, 3) if sent else None,
        "e2e_p50_s": round(p50, 3) if p50 is not None else None,
        "e2e_p95_s": round(p95, 3) if p95 is not None else None,
        "alert_p50_s": round(pct(lat, 0.5), 3) if lat else None,
        "alert_p95_s": round(pct(lat, 0.95), 3) if lat else None,
        "alerts_timed": len(lat),
        "cpu_pct": {k: round(100 * (cpu_seconds(v()) - cpu0[k]) / dt) for k, v in pids.items()},
    }
    print(json.dumps(row), flush=True)
    return row


async def reference(port: int, rooms: int, speed: float, seconds: float, tmp: Path) -> dict:
    """Same rooms and rates on the same broker, consumed only by mosquitto_sub (QoS 1)."""
    sub = shutil.which("mosquitto_sub")
    if sub is None:
        return {"reference": "mosquitto_sub not installed"}
    root = "ref"
    gen = Generator("127.0.0.1", port, root)
    out = open(tmp / "ref.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sub, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", f"{root}/#", "-F", "%t"],
        stdout=out,
        stderr=subprocess.DEVNULL,
    )
    try:
        await gen.connect(rooms)
        gen.speed = speed
        out.flush()

        def lines() -> int:
            return (tmp / "ref.out").read_bytes().count(b"\n")

        deadline = time.monotonic() + 10  # the availability burst of the connects
        while time.monotonic() < deadline and lines() < gen.sent:
            await asyncio.sleep(0.25)
        cpu0, t0, sent0, lines0 = cpu_seconds([proc.pid]), time.monotonic(), gen.sent, lines()
        await gen.run(seconds)
        sent = gen.sent - sent0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and lines() - lines0 < sent * 0.995:
            await asyncio.sleep(0.25)
        dt = time.monotonic() - t0
        delivered = lines() - lines0
        return {
            "reference": "mosquitto_sub (C, QoS 1) as the only consumer",
            "rooms": rooms,
            "speed": speed,
            "offered_msg_s": round((gen.sent - sent0) / seconds, 1),
            "delivered_msg_s": round(delivered / dt, 1),
            "consumer_cpu_pct": round(100 * (cpu_seconds([proc.pid]) - cpu0) / dt),
        }
    finally:
        gen.close()
        proc.terminate()
        proc.wait(10)
        out.close()


async def main_async(args) -> dict:
    """Start the private servers, run, and stop them whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix="nattillsyn-scale-"))
    pg = None if args.database_url else PrivatePostgres()
    broker = None
    try:
        db_url = args.database_url or pg.start()
        broker, port = start_broker(tmp)
        return await run(args, tmp, db_url, port, pg, broker.pid)
    finally:
        if broker is not None and broker.poll() is None:
            os.killpg(broker.pid, signal.SIGTERM)
            broker.wait(10)
        if pg:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def run(
    args, tmp: Path, db_url: str, port: int, pg: PrivatePostgres | None, broker_pid: int
) -> dict:
    mqtt_url = f"mqtt://127.0.0.1:{port}"
    root = "nattillsyn"
    from nattillsyn.db.migrate import migrate

    await migrate(db_url)
    with psycopg.connect(db_url) as conn:
        ts = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        db_version = conn.execute("SHOW server_version").fetchone()[0].split()[0] + (
            f" + TimescaleDB {ts[0]}" if ts else " (plain)"
        )
    seed(db_url, args.rooms)
    svc = Services(db_url, mqtt_url, root, tmp)
    ingest_metrics = free_port()
    for w in range(args.ingest_workers):
        # Each worker its own persistent session; MQTT 5 shared subscription splits the load.
        svc.start(
            "ingest",
            f"ingest-{w}",
            NATTILLSYN_INGEST__CLIENT_ID=f"bench-ingest-{w}",
            NATTILLSYN_INGEST__METRICS_PORT=str(ingest_metrics if w == 0 else free_port()),
        )
    svc.start("alerting")
    gen = Generator("127.0.0.1", port, root)
    lat: list[float] = []
    watcher = None
    rows: list[dict] = []
    ref: dict = {}
    load0 = os.getloadavg()
    ref_speed = None
    try:
        wait_port("127.0.0.1", ingest_metrics, 60)
        watcher = asyncio.create_task(alert_watcher(mqtt_url, root, gen, lat))
        pg_pid = pg.proc.pid if pg else postmaster_pid(db_url)
        pids = {
            "generator": lambda: [os.getpid()],
            "mosquitto": lambda: [broker_pid],
            "ingest": lambda: [
                c for k, p in svc.procs.items() if k.startswith("ingest") for c in children(p.pid)
            ],
            "alerting": lambda: [svc.procs["alerting"].pid],
            "postgres": lambda: children(pg_pid),
        }
        with psycopg.connect(db_url, autocommit=True) as conn:
            ramp = [r for r in (1000, 2500, 5000) if r < args.rooms] + [args.rooms]
            for n in ramp:
                t = time.monotonic()
                await gen.connect(n)
                print(f"# {n} rooms connected in {time.monotonic() - t:.1f}s", flush=True)
                gen.speed = 1.0
                rows.append(
                    await measure_step(gen, args.step_s, conn, pids, args.fall_every, lat, "ramp")
                )
            mosq_rss = rss_mb(broker_pid)
            storage = {}
            for table in ("events", "room_states", "heartbeats"):
                # A hypertable's rows live in its chunks: hypertable_size() counts them.
                size_of = (
                    "hypertable_size" if "TimescaleDB" in db_version else "pg_total_relation_size"
                )
                size, n = conn.execute(
                    f"SELECT {size_of}('{table}'), (SELECT count(*) FROM {table})"
                ).fetchone()
                storage[table] = {"rows": n, "bytes_per_row": round(size / n) if n else None}
            for speed in args.steps:
                if speed == 1:
                    continue
                gen.speed = speed
                row = await measure_step(
                    gen, args.step_s, conn, pids, args.fall_every, lat, "speed"
                )
                rows.append(row)
                if not keeps_up(row):
                    break
        last_ok = max(
            (r for r in rows if keeps_up(r)), key=lambda r: r["offered_msg_s"], default=None
        )
        first_bad = next((r for r in rows if not keeps_up(r)), None)
        if first_bad:
            busiest = max(first_bad["cpu_pct"].items(), key=lambda kv: kv[1])
        else:
            busiest = max(rows[-1]["cpu_pct"].items(), key=lambda kv: kv[1])
        ref_speed = (first_bad or rows[-1])["speed"]
    finally:
        gen.close()
        if watcher:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        svc.stop()
    if ref_speed is not None:
        ref = await reference(port, args.rooms, ref_speed, args.step_s, tmp)
    at_ref = first_bad or rows[-1]
    ratio = (
        round(at_ref["stored_msg_s"] / ref["delivered_msg_s"], 3)
        if ref.get("delivered_msg_s")
        else None
    )
    return {
        "benchmark": "scale",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, shared; load average before {load0[0]:.2f}, "
        f"after {os.getloadavg()[0]:.2f}",
        "rooms": args.rooms,
        "ingest_workers": args.ingest_workers,
        "database": db_version,
        "per_room_msg_s": round(per_room_rate(), 4),
        "steps": rows,
        "sustained_msg_s": last_ok["offered_msg_s"] if last_ok else None,
        "sustained_rooms_equivalent": round(last_ok["offered_msg_s"] / per_room_rate())
        if last_ok
        else None,
        "first_bottleneck": {
            "at_step": first_bad,
            "busiest_process": busiest[0],
            "its_cpu_pct": busiest[1],
        }
        if first_bad
        else f"none within the steps; busiest {busiest[0]} at {busiest[1]}% of a core",
        "alerts_timed": sum(r["alerts_timed"] for r in rows),
        "mosquitto_rss_mb_at_full_rooms": round(mosq_rss, 1),
        "storage": storage,
        "reference": ref,
        "ratio_project_over_reference": ratio,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=10_000)
    p.add_argument(
        "--steps", default="1,2,3,4,6,8,12,16", help="message-rate multipliers at full rooms"
    )
    p.add_argument("--ingest-workers", type=int, default=1, help="ingest processes (MQTT 5 $share)")
    p.add_argument("--step-s", type=float, default=30.0, help="seconds per step")
    p.add_argument("--fall-every", type=float, default=3.0, help="seconds between injected falls")
    p.add_argument(
        "--database-url",
        help="an empty database on this machine (e.g. one with TimescaleDB) instead of a "
        "private plain PostgreSQL",
    )
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = p.parse_args()
    args.steps = [float(s) for s in args.steps.split(",")]
    result = asyncio.run(main_async(args))
    if not args.json:
        print(json.dumps(result, indent=2))
    else:
        print(json.dumps(result))
    if args.fall_every and not result["alerts_timed"]:
        print("error: falls were injected but no alert was timed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
