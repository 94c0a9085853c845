"""Consent withdrawal → the room's edge agent paused: what administration adds to the floor.

    python -m bench.admin_push [--json] [--rooms 10] [--iterations 20]

`--rooms` units' rooms each hold an included resident and a managed device running the
real edge agent (synthetic frames, so the machine's two cores stay free for the rest).
Each iteration withdraws one resident's consent over HTTP as the unit manager and times
until that room's agent publishes state `paused` on the broker; a new consent resumes it.

**Reference** (same run, same agents): the delivery floor without administration: a
retained `DeviceConfig(monitoring=false)` published straight to the device's `config/set`,
timed the same way (broker → agent applies it → state `paused` → broker → subscriber).
The ratio says what the api adds on top: the transaction (consent, monitoring_active,
versioned history, access log), the pusher and its own publish.

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import psycopg
from psycopg import sql

from nattillsyn.api.app import ApiService
from nattillsyn.app.demo import seed, seed_admin, seed_devices
from nattillsyn.app.embedded import PrivateMosquitto, PrivatePostgres, port_open
from nattillsyn.db.migrate import migrate
from nattillsyn.edge.agent import EdgeAgent
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import DeviceConfig, RoomState, RoomStateName, TopicKind, Topics, decode
from nattillsyn.protocol import encode as encode_msg
from nattillsyn.settings import Settings
from nattillsyn.testing.cameras import still_room

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"
CONSENT = {
    "given_by": "Bench",
    "relation": "resident",
    "given_at": "2026-01-01T00:00:00Z",
    "scope": ["motion_analysis"],
}


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(p / 100 * (len(v) - 1))))]


async def _pg_ok(url: str) -> bool:
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


async def main(rooms: int, iterations: int) -> dict:

    pg = broker = None
    db_url = LOCAL_PG if await _pg_ok(LOCAL_PG) else None
    if db_url is None:
        pg = PrivatePostgres()
        db_url = await asyncio.to_thread(pg.start)
    mqtt_url = "mqtt://127.0.0.1:1883"
    if not port_open("127.0.0.1", 1883):
        broker = PrivateMosquitto()
        mqtt_url = await asyncio.to_thread(broker.start)
    schema = f"bench_admin_{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=db_url,
        database_schema=schema,
        mqtt_url=mqtt_url,
        topic_root=f"bench{uuid.uuid4().hex[:6]}/nattillsyn",
        site="site-1",
    )
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"port": 0, "cookie_secure": False})}
    )
    topics = Topics(settings.topic_root)
    room_ids = [f"rum-{101 + i}" for i in range(rooms)]
    agents, api, sub = [], None, None
    try:
        await migrate(db_url, schema)
        await seed(settings, room_ids)
        await seed_admin(settings)
        await seed_devices(settings, room_ids, {"fps": 2.0})
        api = ApiService(settings)
        await api.start()
        sub = MqttClient(mqtt_url, f"bench-sub-{uuid.uuid4().hex[:6]}")
        await sub.start()
        await sub.subscribe(topics.subscription(TopicKind.state, settings.site))
        for room in room_ids:
            edge = settings.edge.model_copy(
                update={"room": room, "device": f"cam-{room}", "heartbeat_s": 5.0}
            )
            agent = EdgeAgent(settings.model_copy(update={"edge": edge}), source=still_room)
            await agent.start()
            agents.append(agent)
        deadline = time.monotonic() + 30
        while not all(a.config_version >= 1 and a.monitoring for a in agents):
            if time.monotonic() > deadline:
                raise RuntimeError("agents did not receive their configs")
            await asyncio.sleep(0.05)

        async def wait_state(room: str, paused: bool, t0: float) -> float:
            while True:
                m = await sub.next_message(timeout=10)
                st = decode(RoomState, m.payload)
                if st.room == room and (st.state is RoomStateName.paused) == paused:
                    return time.monotonic() - t0

        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            r = await http.post(
                f"{api.url}api/v1/login", json={"username": "chef", "password": "chef-demo"}
            )
            assert r.status == 200
            csrf = next(c.value for c in http.cookie_jar if c.key == "nattillsyn_csrf")
            h = {"X-CSRF-Token": csrf}
            residents = (await (await http.get(f"{api.url}api/v1/residents")).json())["residents"]
            by_room = {x["room"]: x["id"] for x in residents}
            ours, ref = [], []
            for i in range(iterations):
                room = room_ids[i % rooms]
                rid = by_room[room]
                agent = agents[i % rooms]
                d = await (await http.get(f"{api.url}api/v1/residents/{rid}")).json()
                cid = next(c["id"] for c in d["consents"] if not c.get("withdrawn_at"))
                while sub.backlog:
                    await sub.next_message(timeout=1)
                t0 = time.monotonic()
                r = await http.post(
                    f"{api.url}api/v1/residents/{rid}/consents/{cid}/withdraw", json={}, headers=h
                )
                assert r.status == 200, await r.text()
                ours.append(await wait_state(room, True, t0))
                await http.post(
                    f"{api.url}api/v1/residents/{rid}/consents", json=CONSENT, headers=h
                )
                await wait_state(room, False, time.monotonic())
                # Reference: the same agent, a config straight from a client.
                while sub.backlog:
                    await sub.next_message(timeout=1)
                topic = topics.device(settings.site, room, f"cam-{room}", TopicKind.config_set)
                v = agent.config_version + 1
                t0 = time.monotonic()
                await sub.publish(
                    topic, encode_msg(DeviceConfig(version=v, monitoring=False)), retain=True
                )
                ref.append(await wait_state(room, True, t0))
                await sub.publish(
                    topic, encode_msg(DeviceConfig(version=v + 1, monitoring=True)), retain=True
                )
                await wait_state(room, False, time.monotonic())
                # Give administration its versions back (it pushes max(desired, applied) + 1).
        p50, ref50 = statistics.median(ours), statistics.median(ref)
        return {
            "benchmark": "admin_push",
            "date": datetime.now(UTC).date().isoformat(),
            "rooms": rooms,
            "iterations": iterations,
            "p50_ms": round(p50 * 1000, 1),
            "p95_ms": round(pct(ours, 95) * 1000, 1),
            "max_ms": round(max(ours) * 1000, 1),
            "reference": "retained DeviceConfig published straight to config/set",
            "ref_p50_ms": round(ref50 * 1000, 1),
            "ref_p95_ms": round(pct(ref, 95) * 1000, 1),
            "ratio_p50": round(p50 / ref50, 2),
            "requirement_ms": 5000,
        }
    finally:
        for a in agents:
            await a.stop()
        if sub is not None:
            await sub.stop()
        if api is not None:
            await api.stop()
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rooms", type=int, default=10)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--json", action="store_true", help="only the JSON line")
    a = p.parse_args()
    result = asyncio.run(main(a.rooms, a.iterations))
    if not a.json:
        print(
            f"withdrawal → paused: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
            f"max {result['max_ms']} ms over {result['iterations']} withdrawals in "
            f"{result['rooms']} rooms; reference (config straight to the device) p50 "
            f"{result['ref_p50_ms']} ms; ratio {result['ratio_p50']}"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
