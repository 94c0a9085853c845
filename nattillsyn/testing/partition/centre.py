"""The centre's process: PostgreSQL, Mosquitto, ingest, alerting and api in one namespace."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import traceback
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from prometheus_client import REGISTRY

from nattillsyn import log
from nattillsyn.alerting.service import AlertingService
from nattillsyn.api.app import ApiService
from nattillsyn.app.demo import seed
from nattillsyn.app.embedded import PrivateMosquitto, PrivatePostgres
from nattillsyn.db.migrate import migrate
from nattillsyn.ingest.service import IngestService
from nattillsyn.settings import Settings
from nattillsyn.testing.partition.clients import CENTRE_PORT, REF_SITE, ROOT, SITE, AlertWatch
from nattillsyn.testing.partition.runner import commands, say


async def run_centre(a: argparse.Namespace) -> None:
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
                say(await centre_report(settings, cmd, watch))
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


async def centre_report(settings: Settings, cmd: dict, watch: AlertWatch) -> dict:
    """What reached the central database, per site and per fall."""
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
    out["ingest_redeliveries_discarded"] = REGISTRY.get_sample_value(
        "nattillsyn_ingest_duplicates_total"
    )
    return out
