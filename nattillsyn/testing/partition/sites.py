"""The care homes' processes: the site with the gateway, and the reference site with
Mosquitto's own bridge and no fallback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from nattillsyn import log
from nattillsyn.app.embedded import PrivateMosquitto, PrivatePostgres
from nattillsyn.gateway.service import GatewayService
from nattillsyn.settings import Settings
from nattillsyn.testing.partition.clients import (
    REF_SITE,
    ROOT,
    SITE,
    AlertWatch,
    Rooms,
    Tablet,
    alert_id_for,
)
from nattillsyn.testing.partition.runner import commands, say, with_ticks


class CareHome:
    """Synthetic rooms and a staff MQTT client on a care home's broker, and with a gateway a
    tablet on its page: the commands both care homes answer alike."""

    def __init__(self, site: str, url: str, a: argparse.Namespace, client: str) -> None:
        self.site, self.work = site, Path(a.workdir)
        self.rooms = Rooms(url, site, a.rooms, a.heartbeat_s, a.rate)
        self.watch = AlertWatch(url, client)
        self.tablet: Tablet | None = None
        self.tablet_url: str | None = None  # the gateway's page, where there is one

    async def answer(self, cmd: dict) -> bool:
        """Answer `cmd` if it is a command both care homes know (False: it is not)."""
        c, tablet = cmd["cmd"], self.tablet
        if c == "start_rooms":
            await self.rooms.start()
            if self.tablet_url:
                self.tablet = Tablet(self.tablet_url)
                await self.tablet.start()
            say({"ok": True})
        elif c == "fall":
            t = time.time()
            ev = self.rooms.fall(cmd["room"])
            say({"event_id": str(ev.event_id), "sent": t,
                 "alert_id": alert_id_for(self.site, cmd["room"], str(ev.event_id))})  # fmt: skip
        elif c == "seen":
            aid = cmd["alert_id"]
            say({"tablet": tablet.first(aid) if tablet else None, "mqtt": self.watch.first(aid),
                 "tablet_new": tablet.new_ids(aid) if tablet else [],
                 "mqtt_new": self.watch.new_ids(aid)})  # fmt: skip
        elif c == "ids":
            path = self.work / f"ids-{self.site}.txt"
            path.write_text("\n".join(self.rooms.ids))
            say({"path": str(path), "n": len(self.rooms.ids), "kinds": self.rooms.kinds})
        elif c == "pause_rooms":
            await self.rooms.stop()
            say({"ok": True})
        else:
            return False
        return True

    async def __aenter__(self) -> CareHome:
        await self.watch.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for x in (self.tablet, self.watch, self.rooms):
            if x is not None:
                with contextlib.suppress(Exception):
                    await x.stop()


async def run_site(a: argparse.Namespace) -> None:
    """The care home with the gateway (bridge, local ingest, standby alerting, tablet page)."""
    log.configure("WARNING", json=False)
    work = Path(a.workdir)
    pg = PrivatePostgres(base_dir=work)
    broker = PrivateMosquitto()
    gw = None
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
        async with CareHome(SITE, url, a, "site-client") as home:
            home.tablet_url = gw.api.url.replace("0.0.0.0", "127.0.0.1")
            await site_commands(gw, home)
    except Exception:
        say({"error": traceback.format_exc()})
    finally:
        if gw is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gw.stop(), 30)
        broker.stop()
        pg.stop()


async def run_reference(a: argparse.Namespace) -> None:
    """The same care home without the gateway: Mosquitto's own bridge, no fallback."""
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
    try:
        url = broker.start()
        async with CareHome(REF_SITE, url, a, "ref-client") as home:
            say({"ready": True})
            async for cmd in commands():
                if cmd["cmd"] == "stop":
                    break
                if not await home.answer(cmd):
                    say({"error": f"unknown command {cmd['cmd']}"})
    except Exception:
        say({"error": traceback.format_exc()})
    finally:
        broker.stop()


async def site_commands(gw: GatewayService, home: CareHome) -> None:
    """Answer the scenario until it says stop; report the gateway's mode changes meanwhile."""
    say({"ready": True})
    last_mode = gw.mode.value
    peak = 0
    async for cmd in with_ticks(commands()):
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
        if await home.answer(cmd):
            continue
        if c == "status":
            say({"mode": gw.mode.value, "replica": gw.snapshot_digest is not None,
                 "contact": gw.machine.contact(datetime.now(UTC)) and gw.machine.centre_seen is not None,
                 "spool": gw.spool.count, "api": gw.api.url if gw.api else None})  # fmt: skip
        elif c == "ack":
            say({"status": await home.tablet.acknowledge(cmd["alert_id"])})
        elif c == "gateway":
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            system = home.tablet.system if home.tablet else []
            say({"events": gw.events, "spool": gw.spool.count, "dropped": gw.spool.dropped,
                 "max_rss_mb": rss, "spool_peak": peak,
                 "delivered": gw.bridge.delivered,
                 "banner": [s.get("gateway_mode") for s in system]})  # fmt: skip
        else:
            say({"error": f"unknown command {c}"})
