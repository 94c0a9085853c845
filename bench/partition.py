"""Partition: a care home cut off from the centre, with network namespaces.

    python -m bench.partition [--outage-s 600] [--rooms 6] [--json]

Three network namespaces on this machine, joined by veth pairs like separate hosts:

```
  centre (10.231.N.1)  ── veth ──  site      (10.231.N.2): Mosquitto, gateway (with its local
  PostgreSQL, Mosquitto,           PostgreSQL, standby alerting, tablet page), synthetic rooms,
  ingest, alerting, api            a tablet signed in on the gateway's page, an MQTT client
                       ── veth ──  reference (10.231.M.2): Mosquitto bridged to the centre by
                                   Mosquitto's own bridge (persistent queue), synthetic rooms
```

The **reference** is the same care home without the gateway's fallback: a plain
store-and-forward bridge (Mosquitto's, `cleansession false`, queued QoS 1), as the
issue allows instead of the project's bridge. Both sites get the same traffic, the same cut
and the same fall at the same moment, in the same run.

Scenario: rooms produce heartbeats, room states and motion events; after a warm-up a fall
happens with the link up (the centre alerts); then both links are cut (`ip link set … down`,
or `--cut drop` for an nftables drop), a fall happens 2 s into the outage (before the gateway
can know the centre is gone), and once the gateway alerts on site another fall happens:
measured is how long until each reaches the site's tablet (WebSocket on the gateway's page)
and an MQTT client on the site broker; staff acknowledge it on the tablet. After
`--outage-s` the links return; measured: the time until the gateway has uploaded, drained
and handed back, every device message in the central database exactly once (published,
stored, duplicated, lost per site), the central alert history of the falls (the local alert
and its acknowledgement), and how often staff were told of each fall as new (centre and
site): the duplicates sent to staff.

Needs root and `ip` (iproute2); PostgreSQL server binaries and Mosquitto. Everything it
creates (namespaces, veths, processes, temporary folders) is removed at the end, also on
failure. Last line: one JSON object.
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
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path

MARK = "@@partition "
SITE, REF_SITE = "site-1", "site-2"
ROOT = "nattillsyn"
CENTRE_PORT = 1883


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    name = f"ntprobe{os.getpid() % 100000}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` failed: {getattr(exc, 'stderr', b'') or exc}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    from nattillsyn.app.embedded import find_pg_bin

    if find_pg_bin() is None:
        return "no PostgreSQL server binaries"
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        return "no mosquitto binary"
    return None


# -- topology --------------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=15)


class Topology:
    """centre, site and reference namespaces; one veth pair from the centre to each site."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.centre, self.site, self.ref = f"ntc{tag}", f"nts{tag}", f"ntr{tag}"
        n = int(tag[:2], 16) % 200 + 20  # one /24 per run, so runs never collide
        self.net = n
        self.links = {
            "site": (f"vc{tag}s", f"vs{tag}", f"10.231.{n}.1", f"10.231.{n}.2"),
            "ref": (f"vc{tag}r", f"vr{tag}", f"10.232.{n}.1", f"10.232.{n}.2"),
        }
        self.created: list[str] = []

    def __enter__(self) -> Topology:
        try:
            for ns in (self.centre, self.site, self.ref):
                _ip("netns", "add", ns)
                self.created.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            for key, ns in (("site", self.site), ("ref", self.ref)):
                c_if, s_if, c_ip, s_ip = self.links[key]
                _ip("link", "add", c_if, "netns", self.centre, "type", "veth", "peer", "name",
                    s_if, "netns", ns)  # fmt: skip
                _ip("-n", self.centre, "addr", "add", f"{c_ip}/24", "dev", c_if)
                _ip("-n", ns, "addr", "add", f"{s_ip}/24", "dev", s_if)
                _ip("-n", self.centre, "link", "set", c_if, "up")
                _ip("-n", ns, "link", "set", s_if, "up")
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def centre_ip(self, key: str) -> str:
        return self.links[key][2]

    def cut(self, how: str) -> None:
        for key, ns in (("site", self.site), ("ref", self.ref)):
            c_if, s_if, _, _ = self.links[key]
            if how == "drop":
                for n in (ns, self.centre):
                    subprocess.run(["ip", "netns", "exec", n, "nft", "-f", "-"], check=True,
                                   input=_NFT_DROP, text=True, capture_output=True)  # fmt: skip
            else:
                _ip("-n", ns, "link", "set", s_if, "down")
                _ip("-n", self.centre, "link", "set", c_if, "down")

    def restore(self, how: str) -> None:
        for key, ns in (("site", self.site), ("ref", self.ref)):
            c_if, s_if, _, _ = self.links[key]
            if how == "drop":
                for n in (ns, self.centre):
                    subprocess.run(["ip", "netns", "exec", n, "nft", "delete", "table", "inet",
                                    "ntpartition"], capture_output=True)  # fmt: skip
            else:
                _ip("-n", ns, "link", "set", s_if, "up")
                _ip("-n", self.centre, "link", "set", c_if, "up")

    def kill_all(self) -> None:
        """Every process still inside our namespaces (servers orphaned by a crash too)."""
        for ns in self.created:
            out = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in out:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)

    def __exit__(self, *exc: object) -> None:
        self.kill_all()
        for ns in reversed(self.created):
            _ip("netns", "del", ns, check=False)  # takes its end of each veth pair along
        self.created.clear()


_NFT_DROP = """table inet ntpartition {
  chain input { type filter hook input priority 0; iifname != "lo" drop; }
  chain output { type filter hook output priority 0; oifname != "lo" drop; }
}
"""


# -- runners (one process per namespace) ---------------------------------------------------------


class Runner:
    """A process inside a namespace, spoken to with JSON lines (stdin → commands,
    stdout lines starting with MARK → answers and events)."""

    def __init__(self, ns: str, role: str, workdir: Path, args: list[str]) -> None:
        self.role = role
        self.log_path = workdir / f"{role}.log"
        env = dict(os.environ, TMPDIR=str(workdir), PYTHONUNBUFFERED="1")
        repo = Path(__file__).resolve().parents[1]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "bench.partition", "--role", role,
             "--workdir", str(workdir), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log_path, "ab"),  # noqa: SIM115
            cwd=repo, env=env, text=True, bufsize=1, start_new_session=True,
        )  # fmt: skip
        self.events: list[dict] = []
        self._answers: asyncio.Queue[dict] = asyncio.Queue()
        self._reader: asyncio.Task | None = None

    def start_reading(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "a") as log:  # noqa: ASYNC230 - a local log file
            while True:
                line = await asyncio.to_thread(self.proc.stdout.readline)
                if not line:
                    await self._answers.put({"error": f"{self.role} runner exited"})
                    return
                if not line.startswith(MARK):
                    log.write(line)
                    continue
                msg = json.loads(line[len(MARK) :])
                if "event" in msg:
                    self.events.append(msg)
                else:
                    await self._answers.put(msg)

    async def ask(self, cmd: str, timeout: float = 120.0, **kw: object) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        answer = await asyncio.wait_for(self._answers.get(), timeout)
        if "error" in answer:
            raise RuntimeError(f"{self.role}: {answer['error']}\n{self.tail()}")
        return answer

    def tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.poll() is None and self.proc.stdin:
                self.proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(30)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self._reader:
            self._reader.cancel()


def say(obj: dict) -> None:
    print(MARK + json.dumps(obj, default=str), flush=True)


async def commands():
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        yield json.loads(line)


# -- synthetic rooms -------------------------------------------------------------------------------


class Rooms:
    """Room devices sending contract messages: heartbeat, state, motion events; falls on request.
    Every message id is remembered (to count what reached the centre)."""

    def __init__(self, url: str, site: str, n: int, hb_s: float, rate: float) -> None:
        from nattillsyn.mqtt import MqttClient
        from nattillsyn.protocol import Topics

        self.topics = Topics(ROOT)
        self.site = site
        self.rooms = [f"rum-{101 + i}" for i in range(n)]
        self.clients = {
            r: MqttClient(url, f"dev-{site}-{r}-{uuid.uuid4().hex[:4]}") for r in self.rooms
        }
        self.seq = dict.fromkeys(self.rooms, 0)
        self.session = int(time.time() * 1000)
        self.hb_s, self.rate = hb_s, rate
        self.ids: list[str] = []
        self.kinds: dict[str, int] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        for c in self.clients.values():
            await c.start()
        self._task = asyncio.create_task(self._run())

    def _base(self, room: str) -> dict:
        self.seq[room] += 1
        return {"site": self.site, "room": room, "device": f"cam-{room}",
                "session": self.session, "seq": self.seq[room]}  # fmt: skip

    def send(self, room: str, kind, msg, retain: bool = False) -> None:
        from nattillsyn.protocol import encode

        self.ids.append(str(msg.id))
        self.kinds[kind.value] = self.kinds.get(kind.value, 0) + 1
        topic = self.topics.device(self.site, room, f"cam-{room}", kind)
        self.clients[room].publish_nowait(topic, encode(msg), qos=1, retain=retain)

    async def _run(self) -> None:
        import random

        from nattillsyn.ids import new_id
        from nattillsyn.protocol import Event, Heartbeat, RoomState, TopicKind

        rnd = random.Random(7)
        states = ["in_bed", "in_bed", "in_bed", "out_of_bed", "in_bathroom", "in_bed"]
        last_hb = 0.0
        t0 = time.monotonic()
        step = 1.0 / self.rate if self.rate > 0 else 3600
        for room in self.rooms:
            self.send(room, TopicKind.state, RoomState(**self._base(room), state="in_bed",
                      since=datetime.now(UTC), confidence=0.9), retain=True)  # fmt: skip
        while True:
            now = time.monotonic()
            if now - last_hb >= self.hb_s:
                last_hb = now
                for room in self.rooms:
                    self.send(room, TopicKind.heartbeat, Heartbeat(
                        **self._base(room), uptime_s=now - t0, fps=5.0, agent_version="bench"))  # fmt: skip
            room = rnd.choice(self.rooms)
            if rnd.random() < 0.25:
                # Short excursions only, so no delayed rule (10 min and more) fires.
                self.send(room, TopicKind.state, RoomState(**self._base(room), state=rnd.choice(states),
                          since=datetime.now(UTC), confidence=0.8), retain=True)  # fmt: skip
            else:
                eid, ts = new_id(), datetime.now(UTC)
                for phase in ("new", "end"):
                    self.send(room, TopicKind.event, Event(
                        **self._base(room), event_id=eid, type="motion", phase=phase, start=ts,
                        end=ts if phase == "end" else None, score=0.3))  # fmt: skip
            await asyncio.sleep(step)

    def fall(self, room: str):
        from nattillsyn.ids import new_id
        from nattillsyn.protocol import Event, TopicKind

        ev = Event(**self._base(room), event_id=new_id(), type="possible_fall", phase="new",
                   start=datetime.now(UTC), score=0.95)  # fmt: skip
        self.send(room, TopicKind.event, ev)
        return ev

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for c in self.clients.values():
            with contextlib.suppress(Exception):
                await c.stop()


class AlertWatch:
    """Alert publications seen on a broker, with their arrival time."""

    def __init__(self, url: str, name: str) -> None:
        from nattillsyn.mqtt import MqttClient

        self.client = MqttClient(url, f"{name}-{uuid.uuid4().hex[:6]}")
        self.seen: list[tuple[float, dict]] = []
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from nattillsyn.protocol import TopicKind, Topics

        await self.client.start()
        await self.client.subscribe(Topics(ROOT).subscription(TopicKind.alert))
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for m in self.client.messages():
            with contextlib.suppress(ValueError):
                self.seen.append((time.time(), json.loads(m.payload)))

    def first(self, alert_id: str, notify: str | None = None) -> float | None:
        for t, a in self.seen:
            if a.get("alert_id") == alert_id and (notify is None or a.get("notify") == notify):
                return t
        return None

    def new_ids(self, alert_id: str) -> list[str]:
        """Message ids of the publications announcing it as new (a relayed copy keeps its id)."""
        return sorted({a["id"] for _, a in self.seen
                       if a.get("alert_id") == alert_id and a.get("notify") == "new"})  # fmt: skip

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        with contextlib.suppress(Exception):
            await self.client.stop()


class Tablet:
    """A tablet on the gateway's page: signed in, live over the WebSocket."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.seen: list[tuple[float, dict]] = []
        self.system: list[dict] = []
        self._task: asyncio.Task | None = None
        self.session = None

    async def start(self) -> None:
        import aiohttp

        # The page is served on an address, not a name: the cookie jar must accept that.
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        r = await self.session.post(f"{self.base}api/v1/login",
                                    json={"username": "natt", "password": "natt-demo"})  # fmt: skip
        if r.status != 200:
            raise RuntimeError(f"tablet sign-in on the gateway failed: {r.status} {await r.text()}")
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        import aiohttp

        assert self.session is not None
        while True:
            try:
                async with self.session.ws_connect(f"{self.base}api/v1/ws?site={SITE}") as ws:
                    async for m in ws:
                        if m.type is not aiohttp.WSMsgType.TEXT:
                            continue
                        data = json.loads(m.data)
                        now = time.time()
                        if data.get("type") == "alert":
                            self.seen.append((now, data["alert"]))
                        elif data.get("type") == "snapshot":
                            for a in data.get("alerts", []):
                                self.seen.append((now, {**a, "_snapshot": True}))
                        elif data.get("type") == "system":
                            self.system.append({**data, "at": now})
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)

    def first(self, alert_id: str) -> float | None:
        for t, a in self.seen:
            if a.get("alert_id") == alert_id and not a.get("_snapshot"):
                return t
        return None

    def new_ids(self, alert_id: str) -> list[str]:
        return sorted({a["id"] for _, a in self.seen
                       if a.get("alert_id") == alert_id and a.get("notify") == "new"})  # fmt: skip

    async def acknowledge(self, alert_id: str) -> int:
        assert self.session is not None
        r = await self.session.post(f"{self.base}api/v1/alerts/{alert_id}/acknowledge", json={})
        return r.status

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self.session:
            await self.session.close()


def alert_id_for(site: str, room: str, event_id: str) -> str:
    from nattillsyn.alerting import rules

    return str(rules.alert_id(site, room, "possible_fall", f"event:{event_id}"))


# -- the centre ---------------------------------------------------------------------------------


async def run_centre(a: argparse.Namespace) -> None:
    from nattillsyn import log
    from nattillsyn.alerting.service import AlertingService
    from nattillsyn.api.app import ApiService
    from nattillsyn.app.demo import seed
    from nattillsyn.app.embedded import PrivateMosquitto, PrivatePostgres
    from nattillsyn.db.migrate import migrate
    from nattillsyn.ingest.service import DUPLICATES, IngestService
    from nattillsyn.settings import Settings

    log.configure("WARNING", json=False)
    work = Path(a.workdir)
    pg = PrivatePostgres(base_dir=work)
    broker = PrivateMosquitto(extra_conf=f"listener {CENTRE_PORT} 0.0.0.0\n")
    services: list = []
    watch = None
    try:
        db = pg.start()
        url = broker.start()
        await migrate(db)
        settings = Settings(database_url=db, mqtt_url=url, topic_root=ROOT, site=SITE)
        settings = settings.model_copy(update={
            "api": settings.api.model_copy(update={"port": 0, "host": "127.0.0.1"}),
            "alerting": settings.alerting.model_copy(update={"tick_s": 0.25}),
            "gateway": settings.gateway.model_copy(update={
                "site_offline_after_s": a.site_offline_after_s, "snapshot_interval_s": 30.0}),
        })  # fmt: skip
        rooms = [f"rum-{101 + i}" for i in range(a.rooms)]
        for site in (SITE, REF_SITE):
            await seed(settings.model_copy(update={"site": site}), rooms)
        watch = AlertWatch(url, "centre-staff")
        await watch.start()
        for svc in (IngestService(settings), AlertingService(settings), ApiService(settings)):
            await svc.start()
            services.append(svc)
        alerting = services[1]
        say({"ready": True, "port": CENTRE_PORT})
        async for cmd in commands():
            c = cmd["cmd"]
            if c == "stop":
                break
            if c == "sites":
                now = datetime.now(UTC)
                sites = alerting.sites.sites if alerting.sites else {}
                say({"sites": {s: {"mode": g.status.mode.value, "offline": alerting.sites.offline(s, now)}
                               for s, g in sites.items()}})  # fmt: skip
            elif c == "report":
                say(await _centre_report(settings, cmd, watch, DUPLICATES))
            else:
                say({"error": f"unknown command {c}"})
    except Exception:
        say({"error": traceback.format_exc()})
    finally:
        if watch:
            await watch.stop()
        for svc in reversed(services):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(svc.stop(), 20)
        broker.stop()
        pg.stop()


async def _centre_report(settings, cmd: dict, watch: AlertWatch, duplicates) -> dict:
    import psycopg

    out: dict = {"sites": {}}
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        for site, path in cmd["ids"].items():
            want = set((await asyncio.to_thread(Path(path).read_text)).split())
            cur = await conn.execute(
                """SELECT id::text, count(*) FROM (
                       SELECT id FROM events WHERE site = %(s)s
                       UNION ALL SELECT id FROM room_states WHERE site = %(s)s
                       UNION ALL SELECT id FROM heartbeats WHERE site = %(s)s) x GROUP BY id""",
                {"s": site},
            )
            rows = dict(await cur.fetchall())
            stored = want & set(rows)
            out["sites"][site] = {
                "published": len(want),
                "stored": len(stored),
                "duplicated": sum(n - 1 for i, n in rows.items() if i in want and n > 1),
                "lost": len(want - set(rows)),
                "dead_letters": (await (await conn.execute(
                    "SELECT count(*) FROM dead_letters WHERE topic LIKE %s", (f"%/{site}/%",)
                )).fetchone())[0],
            }  # fmt: skip
        alerts = {}
        for aid in cmd.get("alerts", []):
            row = await (await conn.execute(
                "SELECT status, acknowledged_by, origin, kind FROM alerts WHERE id = %s", (aid,)
            )).fetchone()  # fmt: skip
            hist = await (await conn.execute(
                "SELECT status, by_user, origin FROM alert_history WHERE alert_id = %s ORDER BY ts, seq",
                (aid,))).fetchall()  # fmt: skip
            alerts[aid] = {
                "status": row[0] if row else None,
                "acknowledged_by": row[1] if row else None,
                "origin": row[2] if row else None,
                "history": [h[0] for h in hist],
                "centre_new": watch.new_ids(aid),
            }
        out["alerts"] = alerts
        cur = await conn.execute(
            """SELECT site, status, started_at, resolved_at FROM alerts WHERE kind = 'site_offline'
               ORDER BY started_at"""
        )
        out["site_offline"] = [
            {"site": r[0], "status": r[1], "started": r[2].isoformat(),
             "resolved": r[3].isoformat() if r[3] else None} for r in await cur.fetchall()
        ]  # fmt: skip
        # Alerts the centre announced as new for the sites' rooms during and after the cut
        out["alert_kinds"] = {}
        for site in (SITE, REF_SITE):
            cur = await conn.execute(
                "SELECT kind, count(*) FROM alerts WHERE site = %s GROUP BY kind ORDER BY kind",
                (site,),
            )
            out["alert_kinds"][site] = dict(await cur.fetchall())
    out["ingest_redeliveries_discarded"] = duplicates._value.get()
    return out


# -- the care home with the gateway ---------------------------------------------------------------


async def run_site(a: argparse.Namespace) -> None:
    from nattillsyn import log
    from nattillsyn.app.embedded import PrivateMosquitto, PrivatePostgres
    from nattillsyn.gateway.service import GatewayService
    from nattillsyn.settings import Settings

    log.configure("WARNING", json=False)
    work = Path(a.workdir)
    pg = PrivatePostgres(base_dir=work)
    broker = PrivateMosquitto()
    gw = rooms = watch = tablet = None
    try:
        db = pg.start()
        url = broker.start()
        settings = Settings(database_url=db, mqtt_url=url, topic_root=ROOT, site=SITE)
        settings = settings.model_copy(update={
            "api": settings.api.model_copy(update={"port": 0, "host": "127.0.0.1",
                                                   "cookie_secure": False}),
            "alerting": settings.alerting.model_copy(update={"tick_s": 0.25}),
            "gateway": settings.gateway.model_copy(update={
                "upstream_url": a.upstream, "state_dir": work / "gateway-state",
                "takeover_after_s": a.takeover_after_s, "handback_after_s": a.handback_after_s,
                "heartbeat_s": 2.0, "metrics_port": 0}),
        })  # fmt: skip
        gw = GatewayService(settings)
        await gw.start()
        rooms = Rooms(url, SITE, a.rooms, a.heartbeat_s, a.rate)
        watch = AlertWatch(url, "site-client")
        await watch.start()
        say({"ready": True})
        last_mode = gw.mode.value
        peak = 0
        async for cmd in _with_ticks(commands()):
            peak = max(peak, gw.spool.count)
            if cmd is None:  # tick: report mode changes as events
                if gw.mode.value != last_mode:
                    last_mode = gw.mode.value
                    say({"event": "mode", "mode": last_mode, "at": time.time(),
                         "reason": gw.machine.reason})  # fmt: skip
                continue
            c = cmd["cmd"]
            if c == "stop":
                break
            if c == "status":
                say({"mode": gw.mode.value, "replica": gw.snapshot_digest is not None,
                     "contact": gw.machine.contact(datetime.now(UTC)) and gw.machine.centre_seen is not None,
                     "spool": gw.spool.count, "api": gw.api.url if gw.api else None})  # fmt: skip
            elif c == "start_rooms":
                await rooms.start()
                tablet = Tablet(gw.api.url.replace("0.0.0.0", "127.0.0.1"))
                await tablet.start()
                say({"ok": True})
            elif c == "fall":
                t = time.time()
                ev = rooms.fall(cmd["room"])
                say({"event_id": str(ev.event_id), "sent": t,
                     "alert_id": alert_id_for(SITE, cmd["room"], str(ev.event_id))})  # fmt: skip
            elif c == "seen":
                aid = cmd["alert_id"]
                say({"tablet": tablet.first(aid) if tablet else None, "mqtt": watch.first(aid),
                     "tablet_new": tablet.new_ids(aid) if tablet else [],
                     "mqtt_new": watch.new_ids(aid)})  # fmt: skip
            elif c == "ack":
                say({"status": await tablet.acknowledge(cmd["alert_id"])})
            elif c == "ids":
                path = work / f"ids-{SITE}.txt"
                path.write_text("\n".join(rooms.ids))
                say({"path": str(path), "n": len(rooms.ids), "kinds": rooms.kinds})
            elif c == "pause_rooms":
                await rooms.stop()
                say({"ok": True})
            elif c == "gateway":
                import resource

                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
                say({"events": gw.events, "spool": gw.spool.count, "dropped": gw.spool.dropped,
                     "max_rss_mb": rss, "spool_peak": peak,
                     "delivered": gw.bridge.delivered,
                     "banner": [s.get("gateway_mode") for s in (tablet.system if tablet else [])]})  # fmt: skip
            else:
                say({"error": f"unknown command {c}"})
    except Exception:
        say({"error": traceback.format_exc()})
    finally:
        for x in (tablet, watch, rooms):
            if x is not None:
                with contextlib.suppress(Exception):
                    await x.stop()
        if gw is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gw.stop(), 30)
        broker.stop()
        pg.stop()


async def _with_ticks(cmds, every: float = 0.1):
    """Commands, with None every `every` seconds in between."""
    it = cmds.__aiter__()
    pending = asyncio.ensure_future(it.__anext__())
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield None
                continue
            try:
                cmd = pending.result()
            except StopAsyncIteration:
                return
            yield cmd
            pending = asyncio.ensure_future(it.__anext__())
    finally:
        pending.cancel()


# -- the reference care home: Mosquitto's own bridge, no fallback -----------------------------------


async def run_reference(a: argparse.Namespace) -> None:
    from nattillsyn import log
    from nattillsyn.app.embedded import PrivateMosquitto

    log.configure("WARNING", json=False)
    host, port = a.upstream.removeprefix("mqtt://").rsplit(":", 1)
    bridge = (
        f"connection centre\naddress {host}:{port}\nbridge_protocol_version mqttv50\n"
        "cleansession false\nlocal_cleansession false\nrestart_timeout 1 5\n"
        "keepalive_interval 10\nbridge_attempt_unsubscribe false\n"
        f"notifications false\nremote_clientid ref-bridge-{REF_SITE}\n"
        f"topic {ROOT}/{REF_SITE}/+/+/event out 1\ntopic {ROOT}/{REF_SITE}/+/+/state out 1\n"
        f"topic {ROOT}/{REF_SITE}/+/+/heartbeat out 1\n"
        f"topic {ROOT}/{REF_SITE}/+/+/availability out 1\n"
        f"topic {ROOT}/{REF_SITE}/+/alert in 1\n"
        "max_queued_messages 1000000\n"
    )
    broker = PrivateMosquitto(extra_conf=bridge)
    rooms = watch = None
    try:
        url = broker.start()
        rooms = Rooms(url, REF_SITE, a.rooms, a.heartbeat_s, a.rate)
        watch = AlertWatch(url, "ref-client")
        await watch.start()
        say({"ready": True})
        async for cmd in commands():
            c = cmd["cmd"]
            if c == "stop":
                break
            if c == "start_rooms":
                await rooms.start()
                say({"ok": True})
            elif c == "fall":
                t = time.time()
                ev = rooms.fall(cmd["room"])
                say({"event_id": str(ev.event_id), "sent": t,
                     "alert_id": alert_id_for(REF_SITE, cmd["room"], str(ev.event_id))})  # fmt: skip
            elif c == "seen":
                aid = cmd["alert_id"]
                say({"mqtt": watch.first(aid), "mqtt_new": watch.new_ids(aid), "tablet": None,
                     "tablet_new": []})  # fmt: skip
            elif c == "ids":
                path = Path(a.workdir) / f"ids-{REF_SITE}.txt"
                path.write_text("\n".join(rooms.ids))
                say({"path": str(path), "n": len(rooms.ids), "kinds": rooms.kinds})
            elif c == "pause_rooms":
                await rooms.stop()
                say({"ok": True})
            else:
                say({"error": f"unknown command {c}"})
    except Exception:
        say({"error": traceback.format_exc()})
    finally:
        for x in (watch, rooms):
            if x is not None:
                with contextlib.suppress(Exception):
                    await x.stop()
        broker.stop()


# -- the scenario --------------------------------------------------------------------------------


async def _until(fn, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        out = await fn()
        if out:
            return out
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(every)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


async def scenario(a: argparse.Namespace) -> dict:
    """The whole partition; returns the figures (and `failures`, empty when all held)."""
    reason = netns_unavailable()
    if reason:
        raise RuntimeError(f"cannot run the partition: {reason}")
    work = Path(tempfile.mkdtemp(prefix="nattillsyn-partition-"))
    os.chmod(work, 0o755)  # PostgreSQL runs as `postgres` below it
    res: dict = {"outage_s": a.outage_s, "rooms": a.rooms, "cut": a.cut, "load_start": _load()}
    fails: list[str] = []
    runners: list[Runner] = []
    topo = Topology()
    try:
        with topo:
            common = ["--rooms", str(a.rooms), "--heartbeat-s", str(a.heartbeat_s),
                      "--rate", str(a.rate)]  # fmt: skip
            centre = Runner(topo.centre, "centre", work, [*common, "--site-offline-after-s",
                            str(a.site_offline_after_s)])  # fmt: skip
            runners.append(centre)
            centre.start_reading()
            ready = await asyncio.wait_for(centre._answers.get(), 120)
            if not ready.get("ready"):
                raise RuntimeError(f"centre: {ready}\n{centre.tail()}")
            up = lambda key: f"mqtt://{topo.centre_ip(key)}:{CENTRE_PORT}"  # noqa: E731
            site = Runner(topo.site, "site", work, [*common, "--upstream", up("site"),
                          "--takeover-after-s", str(a.takeover_after_s),
                          "--handback-after-s", str(a.handback_after_s)])  # fmt: skip
            ref = Runner(topo.ref, "reference", work, [*common, "--upstream", up("ref")])
            runners += [site, ref]
            for r in (site, ref):
                r.start_reading()
                ready = await asyncio.wait_for(r._answers.get(), 120)
                if not ready.get("ready"):
                    raise RuntimeError(f"{r.role}: {ready}\n{r.tail()}")

            async def site_ready():
                s = await site.ask("status")
                return s if s["replica"] and s["contact"] and s["mode"] == "normal" else None

            if not await _until(site_ready, 60, 0.5):
                raise RuntimeError(f"gateway never reached the centre: {await site.ask('status')}")
            await site.ask("start_rooms")
            await ref.ask("start_rooms")
            await asyncio.sleep(a.warmup_s)

            # 1. A fall with the link up: the centre alerts, the gateway only follows.
            pre = await site.ask("fall", room="rum-101")
            got = await _until(lambda: _seen(site, pre["alert_id"], "mqtt"), 10)
            res["link_up_fall_ms"] = round((got["mqtt"] - pre["sent"]) * 1000, 1) if got else None

            # 2. Cut both care homes off.
            topo.cut(a.cut)
            t_cut = time.time()
            res["cut_at"] = datetime.fromtimestamp(t_cut, UTC).isoformat()
            early = early_ref = None
            if a.early_fall_s >= 0:
                await asyncio.sleep(a.early_fall_s)
                early = await site.ask("fall", room="rum-102")
                early_ref = await ref.ask("fall", room="rum-102")
            fb = await _until(lambda: _mode_event(site, "fallback"), a.takeover_after_s + 30)
            if fb is None:
                fails.append("the gateway never took over")
            else:
                res["takeover_s"] = round(fb["at"] - t_cut, 2)
                res["takeover_reason"] = fb["reason"]
            if early is not None:
                got = await _until(lambda: _seen(site, early["alert_id"], "tablet"), 30)
                res["early_fall_to_site_tablet_s"] = (
                    round(got["tablet"] - early["sent"], 2) if got else None
                )
            # 3. A fall while the gateway alerts on site: within 1 s on the tablet.
            await asyncio.sleep(min(5.0, a.outage_s / 10))
            fall = await site.ask("fall", room="rum-103")
            fall_ref = await ref.ask("fall", room="rum-103")
            got = await _until(lambda: _seen(site, fall["alert_id"], "tablet", "mqtt"), 10, 0.02)
            if got is None:
                fails.append("the fall during the outage never reached the site's tablet")
            else:
                res["fall_to_site_tablet_ms"] = round((got["tablet"] - fall["sent"]) * 1000, 1)
                res["fall_to_site_mqtt_ms"] = round((got["mqtt"] - fall["sent"]) * 1000, 1)
                if got["tablet"] - fall["sent"] > 1.0:
                    fails.append("the fall alert took more than 1 s to reach the site's tablet")
            await asyncio.sleep(2.0)
            ack = await site.ask("ack", alert_id=fall["alert_id"])
            res["ack_on_site_http"] = ack["status"]
            if early is not None:
                await site.ask("ack", alert_id=early["alert_id"])
            rest = a.outage_s - (time.time() - t_cut)
            if rest > 0:
                await asyncio.sleep(rest)

            # 4. The link returns.
            topo.restore(a.cut)
            t_back = time.time()
            res["outage_measured_s"] = round(t_back - t_cut, 1)
            nm = await _until(lambda: _mode_event(site, "normal", after=t_back), 300, 0.2)
            if nm is None:
                fails.append("the gateway never handed back")
            else:
                res["handover_s"] = round(nm["at"] - t_back, 2)
            ref_got = await _until(lambda: _seen(ref, fall_ref["alert_id"], "mqtt"), 120)
            res["reference_fall_to_site_s"] = (
                round(ref_got["mqtt"] - fall_ref["sent"], 1) if ref_got else None
            )
            if early_ref is not None:
                ref_early = await _until(lambda: _seen(ref, early_ref["alert_id"], "mqtt"), 30)
                res["reference_early_fall_to_site_s"] = (
                    round(ref_early["mqtt"] - early_ref["sent"], 1) if ref_early else None
                )
            await asyncio.sleep(a.tail_s)
            await site.ask("pause_rooms")
            await ref.ask("pause_rooms")
            ids = {SITE: (await site.ask("ids"))["path"], REF_SITE: (await ref.ask("ids"))["path"]}
            falls = [("link_up", pre), ("early", early), ("outage", fall)]
            falls = [(n, f) for n, f in falls if f is not None]
            alerts = [f["alert_id"] for _, f in falls]

            async def complete():
                rep = await centre.ask("report", ids=ids, alerts=alerts, timeout=120)
                done = all(s["lost"] == 0 for s in rep["sites"].values())
                return rep if done else None

            rep = await _until(complete, 120, 2.0) or await centre.ask(
                "report", ids=ids, alerts=alerts, timeout=120
            )
            res["events"] = rep["sites"]
            res["ingest_redeliveries_discarded"] = rep["ingest_redeliveries_discarded"]
            res["site_offline_alerts"] = rep["site_offline"]
            res["central_alert_kinds"] = rep["alert_kinds"]
            gwinfo = await site.ask("gateway")
            res["gateway_events"] = gwinfo["events"]
            # The site process: gateway (bridge, local ingest, alerting, api), rooms and tablet.
            res["site_process_max_rss_mb"] = gwinfo["max_rss_mb"]
            # The handover, step by step: reconnect, the centre's first beacon, the wait for
            # a stable link (handback_after_s), then upload and drain.
            ev = [
                e for e in gwinfo["events"] if datetime.fromisoformat(e["at"]).timestamp() >= t_back
            ]
            link = next((e for e in ev if e["event"] == "link_up"), None)
            hb = next((e for e in ev if e["event"] == "handback"), None)
            norm = next((e for e in ev if e["event"] == "normal"), None)
            if link and hb and norm and hb.get("centre_heard_at"):
                ts = lambda x: datetime.fromisoformat(x).timestamp()  # noqa: E731
                res["handover_steps_s"] = {
                    "reconnect": round(ts(link["at"]) - t_back, 2),
                    "first_beacon": round(ts(hb["centre_heard_at"]) - ts(link["at"]), 2),
                    "stable_link_wait": round(ts(hb["at"]) - ts(hb["centre_heard_at"]), 2),
                    "upload_and_drain": round(ts(norm["at"]) - ts(hb["at"]), 2),
                }
            res["spool_dropped"] = gwinfo["dropped"]
            res["spool_peak_messages"] = gwinfo["spool_peak"]
            res["tablet_banner"] = sorted({b for b in gwinfo["banner"] if b})
            # Duplicates sent to staff: each fall announced as new once, in one place.
            # Each announcement is one publication (a copy relayed by a bridge keeps its message
            # id): distinct ids announcing the fall as new, at the centre and on site.
            staff = {}
            dup = 0
            for name, info in falls:
                seen = await site.ask("seen", alert_id=info["alert_id"])
                central = rep["alerts"][info["alert_id"]]
                told = set(central["centre_new"]) | set(seen["mqtt_new"]) | set(seen["tablet_new"])
                staff[name] = {
                    "alert_id": info["alert_id"],
                    "central_status": central["status"],
                    "central_history": central["history"],
                    "acknowledged_by": central["acknowledged_by"],
                    "origin": central["origin"],
                    "announced_new": len(told),
                    "announced_new_by_centre": len(central["centre_new"]),
                }
                dup += max(0, len(told) - 1)
                if not told:
                    fails.append(f"the {name} fall was never announced to staff")
            res["falls"] = staff
            res["duplicates_sent_to_staff"] = dup
            if dup:
                fails.append(f"{dup} duplicate announcement(s) to staff")
            out = staff["outage"]
            if out["central_status"] not in ("acknowledged", "resolved"):
                fails.append("the central history lacks the acknowledgement made on site")
            if (
                "firing" not in out["central_history"]
                or "acknowledged" not in out["central_history"]
            ):
                fails.append(f"central history of the outage fall: {out['central_history']}")
            for s, e in res["events"].items():
                if e["lost"] or e["duplicated"]:
                    fails.append(f"{s}: {e['lost']} lost, {e['duplicated']} duplicated")
            g = res["events"].get(SITE, {})
            res["published"], res["stored"] = g.get("published"), g.get("stored")
            res["lost"], res["duplicated"] = g.get("lost"), g.get("duplicated")
            if res.get("fall_to_site_tablet_ms") and res.get("reference_fall_to_site_s"):
                res["ratio_fall_latency_reference_over_gateway"] = round(
                    res["reference_fall_to_site_s"] * 1000 / res["fall_to_site_tablet_ms"], 1
                )
    except Exception as exc:
        fails.append(f"{type(exc).__name__}: {exc}")
        for r in runners:
            res.setdefault("logs", {})[r.role] = r.tail(30)
    finally:
        for r in runners:
            r.stop()
        topo.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)
    res["load_end"] = _load()
    res["failures"] = fails
    res["ok"] = not fails
    return res


async def _seen(r: Runner, alert_id: str, *need: str) -> dict | None:
    s = await r.ask("seen", alert_id=alert_id)
    return s if all(s.get(k) for k in need) else None


async def _mode_event(r: Runner, mode: str, after: float = 0.0) -> dict | None:
    for e in r.events:
        if e.get("event") == "mode" and e["mode"] == mode and e["at"] >= after:
            return e
    return None


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--outage-s", type=float, default=600.0, help="length of the cut (default 600)")
    p.add_argument("--rooms", type=int, default=6, help="rooms per care home (default 6)")
    p.add_argument("--rate", type=float, default=8.0, help="room messages per second per site, "
                   "besides heartbeats (default 8)")  # fmt: skip
    p.add_argument("--heartbeat-s", type=float, default=5.0, help="room heartbeat (default 5 s)")
    p.add_argument("--warmup-s", type=float, default=5.0)
    p.add_argument("--early-fall-s", type=float, default=2.0,
                   help="a fall this long into the outage, before the gateway can know the "
                   "centre is gone (default 2; negative: none)")  # fmt: skip
    p.add_argument("--tail-s", type=float, default=5.0, help="traffic after the handback")
    p.add_argument("--takeover-after-s", type=float, default=20.0)
    p.add_argument("--handback-after-s", type=float, default=10.0)
    p.add_argument("--site-offline-after-s", type=float, default=30.0)
    p.add_argument("--cut", choices=["link", "drop"], default="link",
                   help="ip link set … down (default) or an nftables drop")  # fmt: skip
    p.add_argument("--json", action="store_true", help="only the JSON line")
    p.add_argument("--role", choices=["centre", "site", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--upstream", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.role == "centre":
        asyncio.run(run_centre(a))
        return 0
    if a.role == "site":
        asyncio.run(run_site(a))
        return 0
    if a.role == "reference":
        asyncio.run(run_reference(a))
        return 0
    res = asyncio.run(scenario(a))
    if not a.json:
        for k, v in res.items():
            if k not in ("gateway_events", "logs"):
                print(f"{k}: {v}")
    print(json.dumps(res, default=str))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
