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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench.scale_rig import (
    Services,
    children,
    cpu_seconds,
    latency,
    postmaster_pid,
    rss_mb,
    seed,
    start_broker,
    stored,
)
from bench.scale_rooms import Generator, per_room_rate
from nattillsyn.app.embedded import PrivatePostgres, free_port, wait_port
from nattillsyn.db.migrate import migrate
from nattillsyn.ids import new_id
from nattillsyn.mqtt import MqttClient


async def alert_watcher(mqtt_url: str, root: str, gen: Generator, lat: list[float]) -> None:
    """A staff client: time each fall's alert, then resolve it so the room can alert again."""
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
