"""Alert latency under load, offline detection time, and false alerts on the labelled clips.

    python -m bench.alerts [--json] [--rooms 1000] [--triggers 200] [--quick]

1. **Latency**: ingest, alerting and the api run as their own processes (`nattillsyn …`),
   as in production. 1,000 simulated rooms in 20 units send background traffic
   (heartbeat every 15 s, periodic and changing room states, motion events). Possible-fall
   events are published at a steady rate in distinct rooms; latency is from the edge
   publish to the alert arriving on a connected WebSocket (one per unit, signed in).
   **Reference** (same run, same events): a plain MQTT subscriber on the broker, i.e. the
   delivery floor; the ratio says what alerting + api add on top of it.
2. **Offline**: some rooms stop sending heartbeats (silently, no last will); measured is
   the time from each device's last heartbeat to its offline alert on the WebSocket, with
   the product defaults (heartbeat 15 s, `alerting.offline_after_s` 60 s) unless `--quick`
   scales both down (then say so).
3. **False alerts on the clips**: every labelled clip replayed alone through the real edge
   analysis (source time, last frame held as the scoring rules say) into the alert rules
   with the default preset; an alert is explained when it is a fall alert on a clip with a
   labelled fall; every other alert is false (also reported strictly: the fall alert's
   onset must lie at or after the labelled start − 1 s). Reported per clip-hour.

Last line: one JSON object with p50_ms, p99_ms, max_ms, lost, offline_alert_s, ….
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import psycopg
from psycopg import sql

from bench.alerts_clips import clip_false_alerts
from bench.alerts_rooms import Rooms
from nattillsyn.api.auth import hash_password
from nattillsyn.app.embedded import PrivateMosquitto, PrivatePostgres, free_port, port_open
from nattillsyn.db.migrate import migrate
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Event, TopicKind, Topics, encode
from nattillsyn.settings import default_clips_dir
from nattillsyn.testing.poll import until

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"
PASSWORD = "bench-password"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, round(p / 100 * (len(v) - 1))))
    return v[k]


# -- infrastructure ---------------------------------------------------------------------------


class Infra:
    def __init__(self) -> None:
        self.pg: PrivatePostgres | None = None
        self.broker: PrivateMosquitto | None = None
        self.db_url = os.environ.get("NATTILLSYN_DATABASE_URL")
        self.mqtt_url = os.environ.get("NATTILLSYN_MQTT_URL")

    def start(self) -> None:
        if not self.db_url:
            try:
                with psycopg.connect(LOCAL_PG, connect_timeout=2):
                    self.db_url = LOCAL_PG
            except psycopg.Error:
                self.pg = PrivatePostgres()
                self.db_url = self.pg.start()
        if not self.mqtt_url:
            if port_open("127.0.0.1", 1883):
                self.mqtt_url = "mqtt://127.0.0.1:1883"
            else:
                self.broker = PrivateMosquitto()
                self.mqtt_url = self.broker.start()

    def stop(self) -> None:
        if self.broker:
            self.broker.stop()
        if self.pg:
            self.pg.stop()


async def seed(db_url: str, schema: str, sites: list[str], rooms_per_site: int) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO sites (id, name) VALUES (%s, %s)", [(s, f"Enhet {s}") for s in sites]
            )
            rooms = [(s, f"r{i:03d}", f"Rum {i}") for s in sites for i in range(rooms_per_site)]
            await cur.executemany(
                "INSERT INTO rooms (site_id, id, name) VALUES (%s, %s, %s)", rooms
            )
            await cur.executemany(
                """INSERT INTO residents (site_id, room_id, display_name, monitoring_active,
                                          monitor_from, monitor_to)
                   VALUES (%s, %s, %s, true, '00:00', '00:00')""",
                [(s, r, f"Boende {s}-{r}") for s, r, _ in rooms],
            )
            cur2 = await conn.execute(
                """INSERT INTO users (username, display_name, role, password_hash)
                   VALUES ('bench', 'Bench', 'night_staff', %s) RETURNING id""",
                (hash_password(PASSWORD),),
            )
            uid = (await cur2.fetchone())[0]
            await cur.executemany(
                "INSERT INTO user_sites (user_id, site_id) VALUES (%s, %s)",
                [(uid, s) for s in sites],
            )


def spawn(cmd: str, env: dict, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("nattillsyn")
    argv = [str(exe), cmd] if exe.exists() else [sys.executable, "-m", "nattillsyn.app.cli", cmd]
    return subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def scrape(url: str) -> dict:
    """Means of alerting's own histograms: where the time goes inside the service."""
    out = {}
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        text = await r.text()
    vals = {}
    for line in text.splitlines():
        if line.startswith("nattillsyn_alerting_") and (" " in line) and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            vals[k] = float(v)
    for name in ("event_to_alert_seconds", "store_seconds"):
        n = vals.get(f"nattillsyn_alerting_{name}_count", 0)
        if n:
            out[f"alerting_{name.removesuffix('_seconds')}_mean_ms"] = round(
                1000 * vals[f"nattillsyn_alerting_{name}_sum"] / n, 1
            )
    return out


async def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not come up")
            await asyncio.sleep(0.2)


# -- measurement ---------------------------------------------------------------------------------


async def ws_client(url: str, site: str, cookies, seen: dict, offline: dict, stop: asyncio.Event):
    async with aiohttp.ClientSession(cookies=cookies) as http:
        while not stop.is_set():
            try:
                async with http.ws_connect(f"{url}api/v1/ws?site={site}", heartbeat=20) as ws:
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        t = time.time()
                        data = json.loads(msg.data)
                        if data.get("type") != "alert":
                            continue
                        a = data["alert"]
                        if a.get("notify") != "new":
                            continue
                        if a["kind"] == "possible_fall" and a.get("source_event"):
                            seen.setdefault(a["source_event"], t)
                        elif a["kind"] == "device_offline":
                            offline.setdefault((a["site"], a["room"]), t)
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.5)


async def reference(mqtt_url: str, topics: Topics, ref: dict, stop: asyncio.Event) -> None:
    c = MqttClient(mqtt_url, f"bench-ref-{uuid.uuid4().hex[:6]}")
    await c.start()
    await c.subscribe(topics.subscription(TopicKind.event))
    try:
        while not stop.is_set():
            try:
                msg = await c.next_message(0.5)
            except TimeoutError:
                continue
            if b"possible_fall" in msg.payload:
                t = time.time()
                ref.setdefault(json.loads(msg.payload)["event_id"], t)
    finally:
        await c.stop()


async def latency(args) -> dict:
    infra = Infra()
    infra.start()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    root = f"bench{uuid.uuid4().hex[:6]}/nattillsyn"
    topics = Topics(root)
    sites = [f"unit-{i:02d}" for i in range(args.sites)]
    per_site = args.rooms // args.sites
    rooms = [(s, f"r{i:03d}") for s in sites for i in range(per_site)]
    await migrate(infra.db_url, schema)
    await seed(infra.db_url, schema, sites, per_site)
    port, m_alert, m_ingest = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env.update(
        NATTILLSYN_DATABASE_URL=infra.db_url, NATTILLSYN_DATABASE_SCHEMA=schema,
        NATTILLSYN_MQTT_URL=infra.mqtt_url, NATTILLSYN_TOPIC_ROOT=root,
        NATTILLSYN_API__PORT=str(port), NATTILLSYN_API__COOKIE_SECURE="false",
        NATTILLSYN_ALERTING__OFFLINE_AFTER_S=str(args.offline_after_s),
        NATTILLSYN_ALERTING__METRICS_PORT=str(m_alert),
        NATTILLSYN_INGEST__METRICS_PORT=str(m_ingest), NATTILLSYN_LOG__LEVEL="WARNING",
    )  # fmt: skip
    logdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"nattillsyn-bench-{schema}"
    logdir.mkdir(parents=True, exist_ok=True)
    procs = [spawn(c, env, logdir / f"{c}.log") for c in ("ingest", "alerting", "api")]
    url = f"http://127.0.0.1:{port}/"
    bg = Rooms(infra.mqtt_url, topics, rooms, args.heartbeat_s)
    stop = asyncio.Event()
    seen: dict[str, float] = {}
    offline: dict[tuple[str, str], float] = {}
    ref: dict[str, float] = {}
    published: dict[str, float] = {}
    tasks: list[asyncio.Task] = []
    load_before = os.getloadavg()
    inside: dict = {}
    try:
        await wait_http(f"{url}healthz")
        await wait_http(f"http://127.0.0.1:{m_alert}/metrics")
        await wait_http(f"http://127.0.0.1:{m_ingest}/metrics")
        await bg.start()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            r = await http.post(
                f"{url}api/v1/login", json={"username": "bench", "password": PASSWORD}
            )
            assert r.status == 200, await r.text()
            cookies = {c.key: c.value for c in http.cookie_jar}
        tasks = [
            asyncio.create_task(ws_client(url, s, cookies, seen, offline, stop)) for s in sites
        ]
        tasks.append(asyncio.create_task(reference(infra.mqtt_url, topics, ref, stop)))
        await asyncio.sleep(args.heartbeat_s + 2)  # every room has sent a heartbeat
        t_bg0, sent0 = time.monotonic(), bg.sent
        trig = MqttClient(infra.mqtt_url, f"bench-trigger-{uuid.uuid4().hex[:6]}")
        await trig.start()
        order = list(range(len(rooms)))
        random.Random(7).shuffle(order)
        chosen = [rooms[i] for i in order[: args.triggers]]
        for n, (site, room) in enumerate(chosen):
            ev = Event(site=site, room=room, device=f"cam-{room}", session=bg.session, seq=10**9 + n,
                       event_id=uuid.uuid4(), type="possible_fall", phase="new",
                       start=datetime.now(UTC), score=0.9)  # fmt: skip
            published[str(ev.event_id)] = time.time()
            await trig.publish(
                topics.device(site, room, f"cam-{room}", TopicKind.event), encode(ev)
            )
            await asyncio.sleep(1 / args.rate)
        await trig.stop()
        bg_rate = (bg.sent - sent0) / (time.monotonic() - t_bg0)
        # Offline: some untouched rooms fall silent (no last will, like a power cut).
        quiet = [rooms[i] for i in order[args.triggers : args.triggers + args.offline_rooms]]
        bg.silent.update(quiet)
        await asyncio.sleep(0.2)
        last = {k: bg.last_hb[k] for k in quiet}
        await until(lambda: len(seen) >= len(published), 10)
        await until(
            lambda: all(k in offline for k in quiet), args.offline_after_s + args.heartbeat_s + 30
        )
        inside = await scrape(f"http://127.0.0.1:{m_alert}/metrics")
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await bg.stop()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        async with await psycopg.AsyncConnection.connect(infra.db_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        infra.stop()
    lat = [(seen[k] - t0) * 1000 for k, t0 in published.items() if k in seen]
    ref_lat = [(ref[k] - t0) * 1000 for k, t0 in published.items() if k in ref]
    off = [offline[k] - last[k] for k in quiet if k in offline]
    return {
        "p50_ms": round(pct(lat, 50), 1),
        "p99_ms": round(pct(lat, 99), 1),
        "max_ms": round(max(lat), 1) if lat else None,
        "lost": len(published) - len(lat),
        "triggers": len(published),
        "rooms": len(rooms),
        "units": len(sites),
        "background_msgs_per_s": round(bg_rate, 1),
        "reference": "plain MQTT subscriber on the same broker (delivery floor)",
        "ref_p50_ms": round(pct(ref_lat, 50), 1),
        "ref_p99_ms": round(pct(ref_lat, 99), 1),
        "ratio_p50_vs_ref": round(pct(lat, 50) / pct(ref_lat, 50), 1) if ref_lat else None,
        "offline_alert_s": round(max(off), 1) if off else None,
        "offline_alert_s_all": [round(x, 1) for x in off],
        "offline_lost": len(quiet) - len(off),
        "heartbeat_s": args.heartbeat_s,
        "offline_after_s": args.offline_after_s,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "logs": str(logdir),
    } | inside


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.alerts", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.add_argument("--rooms", type=int, default=1000)
    p.add_argument("--sites", type=int, default=20)
    p.add_argument("--triggers", type=int, default=200)
    p.add_argument("--rate", type=float, default=5.0, help="triggers per second")
    p.add_argument("--heartbeat-s", type=float, default=15.0)
    p.add_argument("--offline-after-s", type=float, default=60.0)
    p.add_argument("--offline-rooms", type=int, default=5)
    p.add_argument("--quick", action="store_true",
                   help="scale offline timing down 10× (heartbeat 1.5 s, offline after 6 s)")  # fmt: skip
    p.add_argument("--no-clips", action="store_true", help="skip the clip replay")
    args = p.parse_args(argv)
    if args.quick:
        args.heartbeat_s, args.offline_after_s = args.heartbeat_s / 10, args.offline_after_s / 10
    result = asyncio.run(latency(args))
    if not args.no_clips:
        clips = Path(os.environ.get("NATTILLSYN_CLIPS_DIR") or default_clips_dir())
        if (clips / "labels.csv").exists():
            try:
                result |= clip_false_alerts(clips)
            except ImportError as exc:  # the edge extra is not installed
                result["clips_error"] = str(exc)
    per_clip = result.pop("per_clip", {})
    print("alert latency, edge publish → WebSocket (ms):")
    print(f"  p50 {result['p50_ms']}  p99 {result['p99_ms']}  max {result['max_ms']}  "
          f"lost {result['lost']}/{result['triggers']}  ({result['rooms']} rooms, "
          f"{result['background_msgs_per_s']} background msg/s)")  # fmt: skip
    print(f"  reference (broker only): p50 {result['ref_p50_ms']}  p99 {result['ref_p99_ms']}  "
          f"ratio p50 {result['ratio_p50_vs_ref']}×")  # fmt: skip
    print(f"offline alert after last heartbeat: {result['offline_alert_s_all']} s "
          f"(heartbeat {result['heartbeat_s']} s, offline after {result['offline_after_s']} s)")  # fmt: skip
    for name, c in per_clip.items():
        print(
            f"  clip {name}: {c['seconds']} s, alerts {c['alerts']}, false {c['false']} "
            f"(strict {c['false_strict']})"
        )
    if "false_alerts_per_clip_hour" in result:
        print(f"false alerts per clip-hour: {result['false_alerts_per_clip_hour']} "
              f"({result['clip_false_alerts']} in {result['clip_hours']} h; strict onset rule: "
              f"{result['clip_false_alerts_strict_onset']})")  # fmt: skip
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
