"""The tablet HTTP api on real services: enrollment, PIN sign-in and its limits, the
server side of auto-lock, the locked live stream, silences, visits, rounds, access log."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import pytest
import yarl
from test_tablet_browser import publish_fall

from nattillsyn.alerting.care import load_open_visits
from nattillsyn.api.live import Client
from nattillsyn.app.demo import DEMO_PINS, DEMO_USERS
from nattillsyn.settings.tablet import TabletSettings

PASSWORDS = {u: p for u, p, *_ in DEMO_USERS}


@pytest.fixture
def settings(settings):
    return settings.model_copy(
        update={"tablet": TabletSettings(pin_max_failures=3, pin_session_s=30)}
    )


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def login(http, url: str, user: str) -> None:
    r = await http.post(f"{url}api/v1/login", json={"username": user, "password": PASSWORDS[user]})
    assert r.status == 200, await r.text()


async def test_enrollment_pin_signin_switch_and_limits(services, pool) -> None:
    url = services["api"].url
    async with session() as manager, session() as tablet:
        # Only managers enroll; night staff may not.
        await login(manager, url, "natt")
        r = await manager.post(f"{url}api/v1/tablets/codes", json={"name": "Natt B"})
        assert r.status == 403
        await login(manager, url, "chef")
        r = await manager.post(
            f"{url}api/v1/tablets/codes", json={"name": "Natt B", "groups": ["backup"]}
        )
        assert r.status == 201
        code = (await r.json())["code"]
        # Before enrollment: no PIN sign-in, no live stream.
        r = await tablet.post(
            f"{url}api/v1/tablet/signin", json={"username": "natt", "pin": "2580"}
        )
        assert r.status == 403
        r = await tablet.get(f"{url}api/v1/ws")
        assert r.status == 401
        r = await tablet.post(f"{url}api/v1/tablet/enroll", json={"code": code.lower()})
        assert r.status == 200, await r.text()
        info = await r.json()
        assert info["enrolled"] and info["site"] == "site-1" and info["groups"] == ["backup"]
        assert {s["username"] for s in info["staff"]} == {"natt", "chef"}
        r = await manager.post(f"{url}api/v1/tablet/enroll", json={"code": code})
        assert r.status == 400  # one-time
        # PIN sign-in; the PIN is useless off an enrolled tablet.
        r = await tablet.post(
            f"{url}api/v1/tablet/signin", json={"username": "natt", "pin": DEMO_PINS["natt"]}
        )
        assert r.status == 200 and (await r.json())["username"] == "natt"
        assert (await (await tablet.get(f"{url}api/v1/board")).json())["rooms"]
        # The PIN session is short and slides with activity (the server side of auto-lock).
        pin = "token_hash IN (SELECT token_hash FROM tablet_signins WHERE ended_at IS NULL)"
        q = f"SELECT expires_at - now() FROM user_sessions WHERE {pin}"
        async with pool.connection() as conn:
            left = (await (await conn.execute(q)).fetchone())[0].total_seconds()
            assert left <= 30
            await conn.execute(
                f"UPDATE user_sessions SET expires_at = now() + interval '5 s' WHERE {pin}"
            )
        assert (await tablet.post(f"{url}api/v1/tablet/activity")).status == 204
        async with pool.connection() as conn:
            left = (await (await conn.execute(q)).fetchone())[0].total_seconds()
        assert 20 < left <= 30
        # Quick switch: chef signs in on the same tablet; natt's session there ends.
        natt_cookie = tablet.cookie_jar.filter_cookies(yarl.URL(url))["nattillsyn_session"].value
        r = await tablet.post(
            f"{url}api/v1/tablet/signin", json={"username": "chef", "pin": DEMO_PINS["chef"]}
        )
        assert r.status == 200
        async with aiohttp.ClientSession(cookies={"nattillsyn_session": natt_cookie}) as old:
            assert (await old.get(f"{url}api/v1/me")).status == 401
        # Wrong PINs: limited per staff member, then 429 even with the right PIN.
        for _ in range(3):
            r = await tablet.post(
                f"{url}api/v1/tablet/signin", json={"username": "natt", "pin": "1111"}
            )
            assert r.status == 401
        r = await tablet.post(
            f"{url}api/v1/tablet/signin", json={"username": "natt", "pin": DEMO_PINS["natt"]}
        )
        assert r.status == 429 and (await r.json())["retry_after_s"] > 0
        # Weak PINs are refused.
        r = await manager.post(f"{url}api/v1/me/pin", json={"password": "chef-demo", "pin": "1234"})
        assert r.status == 422
        r = await manager.post(f"{url}api/v1/me/pin", json={"password": "wrong", "pin": "7391"})
        assert r.status == 401
        # Lock: the staff session ends on the server.
        r = await tablet.post(f"{url}api/v1/tablet/lock")
        assert r.status == 204
        assert (await tablet.get(f"{url}api/v1/me")).status == 401
        # Revoked tablets stop working at once.
        tid = info["id"]
        r = await manager.delete(f"{url}api/v1/tablets/{tid}")
        assert r.status == 204
        assert (await (await tablet.get(f"{url}api/v1/tablet")).json())["enrolled"] is False
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT ok FROM pin_attempts ORDER BY at")).fetchall()
        assert [r[0] for r in rows] == [True, True, False, False, False]


async def test_locked_tablet_stream_carries_alerts_only(services, pool) -> None:
    settings, url = services["settings"], services["api"].url
    async with session() as manager, session() as tablet:
        await login(manager, url, "chef")
        r = await manager.post(f"{url}api/v1/tablets/codes", json={"name": "Natt A"})
        code = (await r.json())["code"]
        assert (await tablet.post(f"{url}api/v1/tablet/enroll", json={"code": code})).status == 200
        async with tablet.ws_connect(f"{url}api/v1/ws") as ws:
            snap = await ws.receive_json(timeout=10)
            assert snap["type"] == "snapshot" and snap["locked"] is True
            assert all(r["state"] == "unknown" and "resident" not in r for r in snap["rooms"])
            assert snap["rounds"] == [] and snap["visits"] == []
            await publish_fall(settings, "rum-101")
            while True:
                msg = await ws.receive_json(timeout=10)
                assert msg["type"] == "alert", msg  # never room states on a locked tablet
                if msg["alert"]["kind"] == "possible_fall":
                    break
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT username, what FROM audit_log WHERE role = 'tablet'")
        ).fetchone()
    assert row == ("tablet:Natt A", "board (locked)")


async def test_replay_after_cursor_includes_old_resolved_alerts(services, pool) -> None:
    settings, url = services["settings"], services["api"].url
    async with session() as http:
        await login(http, url, "natt")
        snap = await (await http.get(f"{url}api/v1/board")).json()
        cursor = snap["cursor"]
        await publish_fall(settings, "rum-102")
        deadline = time.monotonic() + 10
        while True:
            async with pool.connection() as conn:
                row = await (await conn.execute("SELECT id FROM alerts")).fetchone()
            if row:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        # Pretend it was resolved long ago: off the board, but still replayed after the cursor.
        async with pool.connection() as conn:
            await conn.execute(
                """UPDATE alerts SET status = 'resolved', resolved_at = now() - interval '3 hours'"""
            )
            await conn.execute(
                "INSERT INTO alert_history (alert_id, status) VALUES (%s, 'resolved')", (row[0],)
            )
        plain = await (await http.get(f"{url}api/v1/board")).json()
        assert plain["alerts"] == []
        replay = await (await http.get(f"{url}api/v1/board?after={cursor}")).json()
        assert [a["alert_id"] for a in replay["alerts"]] == [str(row[0])]
        assert replay["cursor"] > cursor
        assert (await http.get(f"{url}api/v1/board?after=x")).status == 400


async def test_silences_visits_rounds_and_scoping(services, pool) -> None:
    url = services["api"].url
    async with session() as natt, session() as chef:
        await login(natt, url, "natt")
        await login(chef, url, "chef")
        body = {"room": "rum-101", "kinds": ["possible_fall"], "minutes": 30, "reason": "besök"}
        assert (await natt.post(f"{url}api/v1/silences", json=body)).status == 403
        body = {
            "room": "rum-101",
            "kinds": ["out_of_bed"],
            "minutes": 30,
            "reason": "vaken, tittar på tv",
        }
        r = await natt.post(f"{url}api/v1/silences", json=body)
        assert r.status == 201
        sid = (await r.json())["id"]
        assert len((await (await natt.get(f"{url}api/v1/silences")).json())["silences"]) == 1
        assert (await natt.post(f"{url}api/v1/silences/{sid}/end")).status == 204
        assert (await (await natt.get(f"{url}api/v1/silences")).json())["silences"] == []
        # Another unit is not yours.
        assert (await natt.get(f"{url}api/v1/board?site=elsewhere")).status == 403
        # Visits: validated, started, ended.
        r = await natt.post(f"{url}api/v1/visits", json={"room": "nope", "reason": "unplanned"})
        assert r.status == 422
        r = await natt.post(f"{url}api/v1/visits", json={"room": "rum-101", "reason": "planned"})
        assert r.status == 201
        visit = await r.json()
        assert visit["resident_id"] and visit["by_user"] == "natt" and not visit["practice"]
        r = await natt.post(f"{url}api/v1/visits/{visit['id']}/end")
        assert r.status == 200 and (await r.json())["ended_at"]
        assert (await natt.post(f"{url}api/v1/visits/{visit['id']}/end")).status == 404
        # Visits nobody ended: one of a past night is not tonight's and never shows as
        # ongoing; tonight's stays listed (to be ended), but after 2 h it no longer counts
        # as staff in the room for alerting, so re-sounding resumes.
        site = visit["site"]
        async with pool.connection() as conn:
            for room, ago in (("rum-101", "3 days"), ("rum-102", "3 hours"), ("rum-103", "10 min")):
                await conn.execute(
                    """INSERT INTO visits (id, site, room, started_at, by_user, reason)
                       VALUES (gen_random_uuid(), %s, %s, now() - %s::interval, 'anna',
                               'unplanned')""",
                    (site, room, ago),
                )
            assert await load_open_visits(conn) == {(site, "rum-103")}
        listed = (await (await natt.get(f"{url}api/v1/visits")).json())["visits"]
        open_rooms = {v["room"] for v in listed if v.get("ended_at") is None}
        assert open_rooms == {"rum-102", "rum-103"}
        # Resolve needs an outcome.
        r = await natt.post(f"{url}api/v1/alerts/{uuid.uuid4()}/resolve", json={})
        assert r.status == 422
        # Practice is for managers.
        r = await natt.post(f"{url}api/v1/practice/rounds")
        assert r.status == 403
        r = await chef.post(f"{url}api/v1/practice/rounds")
        assert r.status == 201
        entries = (await r.json())["entries"]
        assert len(entries) == 2 and all(e["practice"] for e in entries)
        r = await natt.post(f"{url}api/v1/rounds/confirm", json={"ids": [e["id"] for e in entries]})
        assert (await r.json())["confirmed"] == 2
        rounds = (await (await natt.get(f"{url}api/v1/rounds")).json())["entries"]
        assert all(e["confirmed_by"] == "natt" for e in rounds)
    async with pool.connection() as conn:
        whats = {r[0] for r in await (await conn.execute("SELECT what FROM audit_log")).fetchall()}
    assert {"silence", "silence end", "visit start", "visit end", "rounds", "round confirm",
            "practice round"} <= whats  # fmt: skip
    assert datetime.now(UTC)


def test_live_routing_of_escalations_to_groups() -> None:
    alert = {"type": "alert", "alert": {"targets": ["unit", "group:backup"]}}
    state = {"type": "state"}
    home = Client(ws=None, site="a", groups=frozenset({"backup"}), sites=frozenset({"a", "b"}))  # type: ignore[arg-type]
    assert home.wants("a", alert) and home.wants("a", state)
    # Escalated from unit b to the backup group: reaches a tablet of unit a whose user may see b.
    assert home.wants("b", alert) and not home.wants("b", state)
    stranger = Client(ws=None, site="a", groups=frozenset({"backup"}), sites=frozenset({"a"}))  # type: ignore[arg-type]
    assert not stranger.wants("b", alert)
    not_yet = {"type": "alert", "alert": {"targets": ["unit"]}}
    assert not home.wants("b", not_yet)
    locked = Client(ws=None, site="a", locked=True)  # type: ignore[arg-type]
    assert locked.wants("a", alert) and not locked.wants("a", state)
    assert not locked.wants("a", {"type": "round"})
