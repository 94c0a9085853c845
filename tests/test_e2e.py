"""End to end on real services: clip frames → edge → broker → ingest → database → alert → api WebSocket."""

from __future__ import annotations

import asyncio
from functools import partial

import aiohttp
import pytest
from db_poll import poll_db

from nattillsyn.alerting.service import AlertingService
from nattillsyn.api.app import ApiService
from nattillsyn.app.demo import DEMO_USERS, seed
from nattillsyn.app.simulate import room_settings
from nattillsyn.edge.agent import EdgeAgent
from nattillsyn.edge.sources import PlaylistSource
from nattillsyn.ingest.service import IngestService

pytestmark = pytest.mark.clips

FALL_CLIP = "gmdcsa24_s3_fall_19.mp4"


async def test_clip_to_alert_on_websocket(settings, pool, clips_dir) -> None:
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"port": 0, "cookie_secure": False})}
    )
    await seed(settings, ["rum-101"])
    room = room_settings(settings, 0, speed=0.0, fall_confirm_s=3.0)
    source = partial(
        PlaylistSource,
        [clips_dir / FALL_CLIP],
        fps=room.edge.fps,
        width=room.edge.width,
        replay_speed=0.0,
        loop=False,
        hold_last_s=room.edge.hold_last_s,
    )
    ingest, alerting, api = IngestService(settings), AlertingService(settings), ApiService(settings)
    agent = EdgeAgent(room, source=source)
    for svc in (ingest, alerting, api):
        await svc.start()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            user, password = DEMO_USERS[0][:2]
            r = await http.post(
                f"{api.url}api/v1/login", json={"username": user, "password": password}
            )
            assert r.status == 200, await r.text()
            async with http.ws_connect(f"{api.url}api/v1/ws") as ws:
                first = await ws.receive_json(timeout=10)
                assert first["type"] == "snapshot"
                assert any(r["id"] == "rum-101" for r in first["rooms"])
                await agent.start()
                alert = None
                async with asyncio.timeout(60):  # a deadline, not a bound on speed
                    while alert is None:
                        msg = await ws.receive_json()
                        if msg["type"] == "alert" and msg["alert"]["kind"] == "possible_fall":
                            alert = msg["alert"]
        assert alert["room"] == "rum-101" and alert["status"] == "firing"
        # The event behind the alert went through ingest into the database.
        row = await poll_db(
            pool,
            "SELECT count(*) FROM events WHERE event_id = %s AND type = 'possible_fall'",
            (alert["source_event"],),
            timeout=20,
        )
        assert row[0] >= 1
        await poll_db(pool, "SELECT count(*) FROM room_states WHERE room = 'rum-101'", timeout=20)
    finally:
        await agent.stop()
        for svc in (api, alerting, ingest):
            await svc.stop()
