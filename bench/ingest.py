"""Ingest benchmark: simulated devices → Mosquitto (project config) → ingest → PostgreSQL.

In one run, against a private Mosquitto started from deploy/mosquitto/mosquitto.conf and
a private PostgreSQL (TimescaleDB when installed, durable commits):

1. ceiling: the publisher into subscribers that only parse (orjson) and count, the
   same number of processes and the same shared subscription as the ingest workers;
2. throughput: the same publisher for the same time into `nattillsyn ingest` with its
   worker processes; events/s is stored messages over first publish → last commit;
   lost and duplicated are counted in the database against the ids published;
3. latency: a steady `--latency-rate` (2,000 events/s) into ingest; p50/p99 of
   source timestamp → commit from the workers' latency histograms, counting the
   messages of the paced run (not the devices' "online" burst stored before it).

`python -m bench.ingest --json` prints a report and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from nattillsyn.db.migrate import migrate
from nattillsyn.embedded import PrivateMosquitto, PrivatePostgres, free_port
from nattillsyn.settings.ingest import IngestSettings

SITE = "site-1"
WINDOW = 900  # outstanding QoS 1 publishes (the broker's receive maximum is 1000)
TABLES = ("events", "room_states", "heartbeats")

# -- the simulated devices (publisher process) ---------------------------------------------


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class Devices:
    """A realistic mix: per 20 messages of a device, 14 events (new/update/update/end
    with one event_id, some possible falls), 4 room states, 2 heartbeats; one message in
    `invalid_every` is malformed in one of several ways (dead-letter path)."""

    PATTERN = "eeeeseeeehseeeeseeesh"[:20]
    STATES = ("in_bed", "out_of_bed", "in_bed", "in_chair", "in_bathroom", "in_bed")
    BAD = ("json", "version", "type", "sender")

    def __init__(self, root: str, devices: int, run: int, invalid_every: int) -> None:
        self.root = root
        self.n = devices
        self.run = run
        self.invalid_every = invalid_every
        self.counter = 0
        self.session = int(time.time() * 1000)
        self.seq = [0] * devices
        self.step = [0] * devices
        self.event_id = [uuid.uuid4() for _ in range(devices)]
        self.phase = [0] * devices
        self.start = [time.time()] * devices
        self.topics = [
            {
                k: f"{root}/{SITE}/rum-{i}/cam-{i}/{k}"
                for k in ("event", "state", "heartbeat", "availability")
            }
            for i in range(devices)
        ]

    def next_id(self) -> str:
        self.counter += 1
        return f"{self.run:08x}-0000-7000-8000-{self.counter:012x}"

    def online(self, i: int) -> tuple[str, bytes]:
        now = time.time()
        body = (
            f'{{"v":1,"id":"{uuid.uuid4()}","ts":"{_iso(now)}","site":"{SITE}","room":"rum-{i}",'
            f'"device":"cam-{i}","session":{self.session},"seq":0,"state":"online"}}'
        )
        return self.topics[i]["availability"], body.encode()

    _ts_at = 0.0
    _ts = ""

    def message(self, k: int) -> tuple[str, bytes, str]:
        """The k-th message: (topic, payload, kind) with kind 'bad' for malformed."""
        i = k % self.n
        now = time.time()
        if now - self._ts_at > 0.001:  # the source time, to the millisecond
            self._ts_at, self._ts = now, _iso(now)
        ts = self._ts
        self.seq[i] += 1
        seq = self.seq[i]
        step = self.step[i]
        self.step[i] = (step + 1) % len(self.PATTERN)
        head = (
            f'"v":1,"id":"{self.next_id()}","ts":"{ts}","site":"{SITE}","room":"rum-{i}",'
            f'"device":"cam-{i}","session":{self.session},"seq":{seq}'
        )
        kind = self.PATTERN[step]
        if self.invalid_every and k % self.invalid_every == self.invalid_every - 1:
            bad = self.BAD[(k // self.invalid_every) % len(self.BAD)]
            topic = self.topics[i]["event"]
            if bad == "json":
                return topic, b'{"v":1,"id":', "bad"
            if bad == "version":
                return topic, ("{" + head.replace('"v":1', '"v":7') + "}").encode(), "bad"
            if bad == "type":
                return topic, f'{{{head},"event_id":"x","type":1,"phase":"new"}}'.encode(), "bad"
            other = self.topics[(i + 1) % self.n]["state"]
            body = f'{{{head},"state":"in_bed","since":"{ts}","confidence":0.9}}'
            return other, body.encode(), "bad"
        if kind == "e":
            phase = ("new", "update", "update", "end")[self.phase[i]]
            if phase == "new":
                self.event_id[i] = uuid.uuid4()
                self.start[i] = now
            self.phase[i] = (self.phase[i] + 1) % 4
            etype = "possible_fall" if seq % 97 == 0 else "motion"
            end = f',"end":"{ts}"' if phase == "end" else ""
            body = (
                f'{{{head},"event_id":"{self.event_id[i]}","type":"{etype}","phase":"{phase}",'
                f'"start":"{_iso(self.start[i])}"{end},"score":0.{seq % 10},"zone":"bed",'
                f'"box":[0.1,0.2,0.3,0.4]}}'
            )
            return self.topics[i]["event"], body.encode(), "event"
        if kind == "s":
            state = self.STATES[seq % len(self.STATES)]
            body = (
                f'{{{head},"state":"{state}","since":"{ts}","confidence":0.8{seq % 10},'
                f'"motion":0.0{seq % 10}}}'
            )
            return self.topics[i]["state"], body.encode(), "state"
        body = (
            f'{{{head},"uptime_s":{seq * 15},"fps":5.0,"agent_version":"0.1.0",'
            f'"config_version":1,"queue":0,"monitoring":true}}'
        )
        return self.topics[i]["heartbeat"], body.encode(), "heartbeat"


async def publisher(args: argparse.Namespace) -> None:
    """Child process: publish for `seconds` at `rate` (0: as fast as the window allows)."""
    from nattillsyn.mqtt import MqttClient

    devs = Devices(args.root, args.devices, args.run, args.invalid_every)
    client = MqttClient(args.url, f"bench-pub-{args.run:x}", max_inflight=WINDOW + 100)
    await client.start()
    for i in range(devs.n):
        topic, body = devs.online(i)
        client.publish_nowait(topic, body, retain=True)
    await client.wait_outstanding_below(1)
    print("ready", flush=True)
    sys.stdin.readline()  # go
    counts = {"event": 0, "state": 0, "heartbeat": 0, "bad": 0}
    t_first = time.time()
    deadline = time.monotonic() + args.seconds
    k = 0
    tick = 0.01
    next_tick = time.monotonic()
    while time.monotonic() < deadline:
        if args.rate:
            quota = max(1, round(args.rate * tick))
            next_tick += tick
        else:
            quota = 100
        for _ in range(quota):
            topic, body, kind = devs.message(k)
            client.publish_nowait(topic, body)
            counts[kind] += 1
            k += 1
        if args.rate:
            delay = next_tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await client.wait_outstanding_below(WINDOW)
    t_last = time.time()
    await client.wait_outstanding_below(1, timeout=120)
    await client.stop()
    cpu = time.process_time()
    print(
        json.dumps(
            {"counts": counts, "published": k, "t_first": t_first, "t_last": t_last, "cpu": cpu}
        ),
        flush=True,
    )


def _report(path: Path, n: int, last: float) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{n} {last}")
    tmp.replace(path)  # atomic: the runner never reads half a line


async def counter(args: argparse.Namespace) -> None:
    """Child process for the ceiling: parse and count, acknowledge per batch."""
    import orjson

    from nattillsyn.mqtt import MqttClient

    client = MqttClient(
        args.url,
        f"bench-count-{args.run:x}-{args.worker}",
        manual_ack=True,
        receive_maximum=2000,
        clean_start=True,
    )
    await client.start()
    await client.subscribe(f"$share/bench-count/{args.root}/#", qos=1)
    out = Path(args.out)
    _report(out, 0, 0.0)
    print("ready", flush=True)
    state = {"n": 0, "last": 0.0}

    async def report() -> None:  # off the hot path: 10 times a second
        while True:
            await asyncio.sleep(0.1)
            _report(out, state["n"], state["last"])

    reporter = asyncio.create_task(report())
    while True:
        batch = await client.next_batch(1000, 0.05)
        for m in batch:
            with contextlib.suppress(orjson.JSONDecodeError):
                orjson.loads(m.payload)
        client.ack_many(batch)
        state["n"] += len(batch)
        state["last"] = time.time()
    reporter.cancel()


# -- the runner ----------------------------------------------------------------------------


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            p = int(stat.parent.name)
            parent[p] = int(fields[1])
            cpu[p] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for p, used in cpu.items():
        q = p
        while q and q != pid:
            q = parent.get(q, 0)
        if q == pid:
            total += used
    return total


def _py() -> list[str]:
    return [sys.executable, "-m", "bench.ingest"]


def start_publisher(
    url: str, root: str, run: int, seconds: float, rate: float, devices: int, invalid_every: int
) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            *_py(),
            "--role",
            "publisher",
            "--url",
            url,
            "--root",
            root,
            "--run",
            str(run),
            "--seconds",
            str(seconds),
            "--rate",
            str(rate),
            "--devices",
            str(devices),
            "--invalid-every",
            str(invalid_every),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"publisher failed to start: {line!r}")
    return proc


def go(proc: subprocess.Popen) -> dict:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    proc.wait(30)
    return json.loads(line)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ceiling_phase(url: str, args: argparse.Namespace, run: int, broker: PrivateMosquitto) -> dict:
    root = f"bench{run:x}c"
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    workers = []
    for w in range(args.workers):
        out = tmp / f"count{w}"
        p = subprocess.Popen(
            [
                *_py(),
                "--role",
                "counter",
                "--url",
                url,
                "--root",
                root,
                "--run",
                str(run),
                "--worker",
                str(w),
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("counter failed to start")
        workers.append((p, out))
    pub = start_publisher(url, root, run, args.seconds, 0, args.devices, args.invalid_every)
    broker_cpu = tree_cpu(broker.proc.pid)
    counter_cpu = sum(tree_cpu(p.pid) for p, _o in workers)
    res = go(pub)
    want = res["published"]
    extra = args.devices  # the "online" availability message of each device, before the run
    deadline = time.monotonic() + 120
    stalled = time.monotonic()
    got = -1
    while time.monotonic() < deadline:
        vals = [out.read_text().split() for _p, out in workers]
        total = sum(int(v[0]) for v in vals)
        if total != got:
            got, stalled = total, time.monotonic()
        if total >= want + extra or time.monotonic() - stalled > 10:
            break
        time.sleep(0.1)
    t_end = max(float(v[1]) for v in vals)
    broker_cpu = tree_cpu(broker.proc.pid) - broker_cpu
    counter_cpu = sum(tree_cpu(p.pid) for p, _o in workers) - counter_cpu
    for p, _out in workers:
        p.terminate()
        p.wait(10)
    got -= extra
    return {
        "published": want,
        "received": got,
        "seconds": t_end - res["t_first"],
        "per_s": got / (t_end - res["t_first"]),
        "publish_per_s": want / (res["t_last"] - res["t_first"]),
        "cpu_us_per_msg": {
            "publisher": round(res["cpu"] / want * 1e6, 1),
            "broker": round(broker_cpu / want * 1e6, 1),
            "consumers": round(counter_cpu / want * 1e6, 1),
        },
    }


class Ingest:
    """`nattillsyn ingest` (the supervisor and its workers) on a fresh schema and root."""

    def __init__(
        self, mqtt_url: str, db_url: str, schema: str, root: str, workers: int, batch_ms: int
    ) -> None:
        self.metrics_port = free_port()
        while any(_port_busy(self.metrics_port + i) for i in range(workers)):
            self.metrics_port = free_port()
        self.workers = workers
        env = os.environ | {
            "NATTILLSYN_DATABASE_URL": db_url,
            "NATTILLSYN_DATABASE_SCHEMA": schema,
            "NATTILLSYN_MQTT_URL": mqtt_url,
            "NATTILLSYN_TOPIC_ROOT": root,
            "NATTILLSYN_INGEST__WORKERS": str(workers),
            "NATTILLSYN_INGEST__BATCH_MS": str(batch_ms),
            "NATTILLSYN_INGEST__METRICS_PORT": str(self.metrics_port),
            "NATTILLSYN_INGEST__CLIENT_ID": f"bench-ingest-{root}",
            "NATTILLSYN_LOG__LEVEL": "WARNING",
        }
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the run
            prefix="bench-ingest-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nattillsyn.cli", "ingest"],
            env=env,
            start_new_session=True,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                for i in range(self.workers):
                    self.scrape(i)
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("ingest workers did not come up")

    def scrape(self, worker: int) -> str:
        url = f"http://127.0.0.1:{self.metrics_port + worker}/metrics"
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()

    def latency_buckets(self) -> list[tuple[float, float]]:
        """Summed cumulative histogram (upper bound, count) over the workers."""
        total: dict[float, float] = {}
        for i in range(self.workers):
            for line in self.scrape(i).splitlines():
                if line.startswith("nattillsyn_ingest_latency_seconds_bucket"):
                    le = line.split('le="')[1].split('"')[0]
                    bound = float("inf") if le == "+Inf" else float(le)
                    total[bound] = total.get(bound, 0) + float(line.rsplit(" ", 1)[1])
        return sorted(total.items())

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def _port_busy(port: int) -> bool:
    from nattillsyn.embedded import port_open

    return port_open("127.0.0.1", port, 0.05)


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Quantile from a cumulative histogram, linear inside the bucket (seconds)."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return float("nan")
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            span = count - prev_count
            frac = (rank - prev_count) / span if span else 1.0
            return prev_bound + (bound - prev_bound) * frac
        prev_bound, prev_count = bound, count
    return prev_bound


def wait_online(db_url: str, schema: str, devices: int, timeout: float = 60) -> None:
    """Until ingest has stored every device's "online" message."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}, public")
        while True:
            n = conn.execute("SELECT count(*) FROM devices WHERE availability = 'online'")
            if n.fetchone()[0] >= devices:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("ingest did not store the devices' online messages")
            time.sleep(0.1)


def count_stored(db_url: str, schema: str, run: int) -> dict:
    prefix = f"{run:08x}-0000-7000-8000-"
    with psycopg.connect(db_url) as conn:
        conn.execute(f"SET search_path TO {schema}, public")
        out = {"rows": 0, "distinct": 0, "last_commit": 0.0}
        for table in TABLES:
            rows, distinct, last = conn.execute(
                f"SELECT count(*), count(DISTINCT id), extract(epoch FROM max(received_at)) "
                f"FROM {table} WHERE id::text LIKE %s",
                (prefix + "%",),
            ).fetchone()
            out["rows"] += rows
            out["distinct"] += distinct
            out["last_commit"] = max(out["last_commit"], float(last or 0))
        lat = conn.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM received_at - ts)) FROM events WHERE id::text LIKE %s",
            (prefix + "%",),
        ).fetchone()[0]
        out["insert_p50_ms"], out["insert_p99_ms"] = (
            (round(lat[0] * 1000, 1), round(lat[1] * 1000, 1)) if lat else (None, None)
        )
        dead, last_dead = conn.execute(
            "SELECT count(*), extract(epoch FROM max(received_at)) FROM dead_letters"
        ).fetchone()
        out["dead"] = dead
        out["last_commit"] = max(out["last_commit"], float(last_dead or 0))
    return out


def ingest_phase(
    servers: tuple[PrivateMosquitto, PrivatePostgres],
    args: argparse.Namespace,
    run: int,
    seconds: float,
    rate: float,
) -> dict:
    broker, pg = servers
    mqtt_url, db_url = broker.url, pg.url
    schema = f"bench_{run:x}"
    root = f"bench{run:x}i"
    asyncio.run(migrate(db_url, schema))
    ingest = Ingest(mqtt_url, db_url, schema, root, args.workers, args.batch_ms)
    try:
        ingest.wait_ready()
        pub = start_publisher(mqtt_url, root, run, seconds, rate, args.devices, args.invalid_every)
        # The devices' "online" burst (all at once, before the paced run) is stored first
        # and left out of the latency histogram: p50/p99 are of the messages of the run.
        wait_online(db_url, schema, args.devices)
        before = ingest.latency_buckets()
        cpu0 = [tree_cpu(p) for p in (broker.proc.pid, pg.proc.pid, ingest.proc.pid)]
        res = go(pub)
        counts = res["counts"]
        valid = counts["event"] + counts["state"] + counts["heartbeat"]
        deadline = time.monotonic() + 180
        stalled = time.monotonic()
        seen = -1
        while True:
            stored = count_stored(db_url, schema, run)
            done = stored["distinct"] + stored["dead"]
            if done != seen:
                seen, stalled = done, time.monotonic()
            if stored["distinct"] >= valid and stored["dead"] >= counts["bad"]:
                break
            if time.monotonic() > deadline or time.monotonic() - stalled > 15:
                break
            time.sleep(0.2)
        earlier = dict(before)
        buckets = [(bound, n - earlier.get(bound, 0)) for bound, n in ingest.latency_buckets()]
        cpu1 = [tree_cpu(p) for p in (broker.proc.pid, pg.proc.pid, ingest.proc.pid)]
    finally:
        ingest.stop()
    n = res["published"]
    cpu = {
        "publisher": round(res["cpu"] / n * 1e6, 1),
        **{
            name: round((b - a) / n * 1e6, 1)
            for name, a, b in zip(("broker", "postgres", "ingest"), cpu0, cpu1, strict=True)
        },
    }
    committed = stored["distinct"] + stored["dead"]
    elapsed = stored["last_commit"] - res["t_first"]
    return {
        "published": res["published"],
        "valid": valid,
        "invalid": counts["bad"],
        "stored": stored["distinct"],
        "dead_letters": stored["dead"],
        "lost": (valid - stored["distinct"]) + max(0, counts["bad"] - stored["dead"]),
        "duplicated": stored["rows"] - stored["distinct"],
        "seconds": elapsed,
        "per_s": committed / elapsed if elapsed > 0 else 0.0,
        "publish_per_s": res["published"] / (res["t_last"] - res["t_first"]),
        "online_burst_p99_ms": quantile(before, 0.99) * 1000,
        "p50_ms": quantile(buckets, 0.50) * 1000,
        "p99_ms": quantile(buckets, 0.99) * 1000,
        # Transaction start (received_at) minus source time: the part before the write.
        "insert_p50_ms": stored["insert_p50_ms"],
        "insert_p99_ms": stored["insert_p99_ms"],
        "cpu_us_per_msg": cpu,
    }


def main_runner(args: argparse.Namespace) -> int:
    loads = [loadavg()]
    broker = PrivateMosquitto()
    pg = PrivatePostgres(
        timescale=not args.plain,
        settings={} if args.no_durable else {"fsync": "on", "synchronous_commit": "on"},
    )
    run = int(time.time()) & 0xFFFFFFF
    result: dict = {}
    try:
        mqtt_url = broker.start()
        pg.start()
        backend = "timescaledb" if pg.timescale else "postgresql"
        print(
            f"bench.ingest: {args.workers} workers, {args.devices} devices, {args.seconds:.0f} s "
            f"per phase, backend {backend}, load {loads[0]}",
            file=sys.stderr,
        )
        phases = set(args.phases.split(","))
        nan = float("nan")
        empty = {"per_s": nan, "lost": 0, "duplicated": 0, "published": 0, "dead_letters": 0}
        empty |= {"seconds": 0.0, "p50_ms": nan, "p99_ms": nan}
        ceiling, thr, lat = dict(empty), dict(empty), dict(empty)
        if "ceiling" in phases:
            ceiling = ceiling_phase(mqtt_url, args, run, broker)
            loads.append(loadavg())
            print(f"ceiling (parse+count): {ceiling}", file=sys.stderr)
        if "throughput" in phases:
            thr = ingest_phase((broker, pg), args, run + 1, args.seconds, 0)
            loads.append(loadavg())
            print(f"ingest (max rate): {thr}", file=sys.stderr)
        if "latency" in phases:
            lat = ingest_phase((broker, pg), args, run + 2, args.latency_seconds, args.latency_rate)
            loads.append(loadavg())
            print(f"ingest at {args.latency_rate:.0f}/s: {lat}", file=sys.stderr)
        result = {
            "events_per_s": round(thr["per_s"], 1),
            "ceiling_per_s": round(ceiling["per_s"], 1),
            "ratio_vs_ceiling": round(thr["per_s"] / ceiling["per_s"], 3),
            "p50_ms": round(lat["p50_ms"], 1),
            "p99_ms": round(lat["p99_ms"], 1),
            "latency_rate_per_s": args.latency_rate,
            "lost": thr["lost"] + lat["lost"],
            "duplicated": thr["duplicated"] + lat["duplicated"],
            "published": thr["published"] + lat["published"],
            "dead_letters": thr["dead_letters"] + lat["dead_letters"],
            "seconds": round(thr["seconds"], 1),
            "workers": args.workers,
            "backend": backend,
            "durable_commits": not args.no_durable,
            "cpu_us_per_msg": {
                "ceiling": ceiling.get("cpu_us_per_msg"),
                "ingest": thr.get("cpu_us_per_msg"),
            },
            "loadavg": loads,
            "cpus": os.cpu_count(),
        }
    finally:
        broker.stop()
        pg.stop()
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:20s} {v}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.add_argument("--seconds", type=float, default=60.0, help="publish time per phase")
    p.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    p.add_argument("--devices", type=int, default=2000, help="simulated devices")
    p.add_argument(
        "--batch-ms", type=int, default=IngestSettings().batch_ms, help="ingest.batch_ms"
    )
    p.add_argument("--latency-rate", type=float, default=2000.0, help="events/s, latency phase")
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--invalid-every", type=int, default=1000, help="one malformed message per N")
    p.add_argument(
        "--phases", default="ceiling,throughput,latency", help="comma-separated subset to run"
    )
    p.add_argument("--plain", action="store_true", help="plain PostgreSQL even if TimescaleDB")
    p.add_argument("--no-durable", action="store_true", help="fsync off (throw-away data)")
    # internal: the child processes
    p.add_argument("--role", choices=("runner", "publisher", "counter"), default="runner")
    p.add_argument("--url")
    p.add_argument("--root")
    p.add_argument("--run", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--worker", type=int, default=0)
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.role == "publisher":
        asyncio.run(publisher(args))
        return 0
    if args.role == "counter":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(counter(args))
        return 0
    return main_runner(args)


if __name__ == "__main__":
    sys.exit(main())
