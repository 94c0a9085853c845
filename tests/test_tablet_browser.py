"""The tablet app in a real Chromium: an alert appears with its sound, acknowledge and
resolve, reconnect and replay after a server restart, a paused resident raises nothing,
shared-tablet PIN sign-in with quick switch and auto-lock (the page's clock is moved, not
waited for), rounds, visits and practice. Latency is measured by bench.alerts, not here."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import pytest

from nattillsyn.alerting.service import AlertingService
from nattillsyn.api.app import ApiService
from nattillsyn.app.demo import DEMO_USERS
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Event, Heartbeat, TopicKind, Topics, encode
from nattillsyn.settings.alerting import AlertingSettings
from nattillsyn.settings.tablet import TabletSettings

pytestmark = pytest.mark.browser
PINS = {"natt": "2580", "chef": "1470"}


@pytest.fixture
def settings(settings):
    alerting = AlertingSettings.model_validate(
        settings.alerting.model_dump()
        | {"tick_s": 0.2, "care_refresh_s": 1.0, "liveness_stale_s": 10.0}
    )
    tablet = TabletSettings(auto_lock_s=6, pin_max_failures=3)
    return settings.model_copy(update={"alerting": alerting, "tablet": tablet})


async def publish_fall(settings, room: str) -> float:
    """Publish a possible-fall event as the room's device; returns the publish time (ms)."""
    topics = Topics(settings.topic_root)
    pub = MqttClient(settings.mqtt_url, f"pub-{uuid.uuid4().hex[:8]}")
    await pub.start()
    try:
        ids = dict(site=settings.site, room=room, device="cam-1", session=1, seq=1)
        hb = Heartbeat(**ids, uptime_s=1, fps=5, agent_version="t")
        await pub.publish(
            topics.device(settings.site, room, "cam-1", TopicKind.heartbeat), encode(hb)
        )
        ev = Event(
            **(ids | {"seq": 2}), event_id=uuid.uuid4(), type="possible_fall", phase="new",
            start=datetime.now(UTC),
        )  # fmt: skip
        t = time.time() * 1000
        await pub.publish(topics.device(settings.site, room, "cam-1", TopicKind.event), encode(ev))
        return t
    finally:
        await pub.stop()


async def sign_in(page, url: str, user: str = "natt") -> None:
    password = dict((u, p) for u, p, *_ in DEMO_USERS)[user]
    await page.goto(url)
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", password)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#conn[data-state=online]", timeout=10_000)


async def set_pins(url: str) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for user, password, *_ in DEMO_USERS:
            r = await http.post(f"{url}api/v1/login", json={"username": user, "password": password})
            assert r.status == 200
            r = await http.post(
                f"{url}api/v1/me/pin", json={"password": password, "pin": PINS[user]}
            )
            assert r.status == 204, await r.text()


async def test_alert_sounds_then_ack_and_resolve(services, page, pool) -> None:
    settings, api = services["settings"], services["api"]
    await sign_in(page, api.url)
    await page.wait_for_selector(".room[data-room=rum-101]")
    assert await page.is_hidden("#login")

    t_pub = await publish_fall(settings, "rum-101")
    alert = page.locator(".alert[data-status=firing]")
    await alert.wait_for(timeout=5_000)
    log = await page.evaluate("window.nattillsyn.soundLog")
    assert log and log[0]["why"] == "new" and log[0]["priority"] == "high"
    latency_ms = log[0]["at"] - t_pub
    print(f"browser latency publish→sound: {latency_ms:.0f} ms (bench.alerts measures it)")
    assert "Möjligt fall" in await alert.locator(".title").inner_text()
    assert "Rum 101" in await alert.locator(".title").inner_text()
    assert await page.get_attribute(".room[data-room=rum-101]", "data-alert") == "true"

    await alert.locator("button.ack").click()
    acked = page.locator(".alert[data-status=acknowledged]")
    await acked.wait_for(timeout=5_000)
    assert "natt" in await acked.locator(".meta").inner_text()

    await acked.locator("select.outcome").select_option("false_alarm")
    await acked.locator("button.resolve").click()
    await page.locator(".alert[data-status=resolved]").wait_for(timeout=5_000)
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT status, outcome, acknowledged_by, resolved_by FROM alerts")
        ).fetchone()
        assert row == ("resolved", "false_alarm", "natt", "natt")
        actions = {
            r[0] for r in await (await conn.execute("SELECT what FROM audit_log")).fetchall()
        }
        assert {"board", "alert acknowledge", "alert resolve"} <= actions

    # Installable PWA: the service worker is active and the manifest has PNG icons.
    active = await page.evaluate("navigator.serviceWorker.ready.then((r) => !!r.active && r.scope)")
    assert active == api.url
    manifest = await page.evaluate("fetch('/static/manifest.webmanifest').then((r) => r.json())")
    assert {"192x192", "512x512"} <= {i["sizes"] for i in manifest["icons"]}
    assert manifest["lang"] == "sv" and manifest["display"] == "standalone"

    # English is one tap away.
    await page.click("#lang")
    assert await page.text_content(".tabs button span[data-i18n=alerts]") == "Alerts"


async def test_reconnect_after_restart_shows_alert_raised_while_disconnected(
    services, page, pool
) -> None:
    settings, api = services["settings"], services["api"]
    await sign_in(page, api.url)
    port = api.port
    await api.stop()  # the api goes away; alerting keeps running
    await page.wait_for_selector("#conn[data-state=reconnecting]", timeout=10_000)
    await publish_fall(settings, "rum-102")
    deadline = time.monotonic() + 10
    while True:
        async with pool.connection() as conn:
            n = (await (await conn.execute("SELECT count(*) FROM alerts")).fetchone())[0]
        if n:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    s2 = settings.model_copy(update={"api": settings.api.model_copy(update={"port": port})})
    api2 = ApiService(s2)
    await api2.start()
    try:
        alert = page.locator(".alert[data-status=firing][data-room=rum-102]")
        await alert.wait_for(timeout=20_000)
        assert await page.get_attribute("#conn", "data-state") == "online"
        log = await page.evaluate("window.nattillsyn.soundLog")
        assert any(e["why"] in ("missed", "new") for e in log)
        assert await page.evaluate("window.nattillsyn.reconnects") >= 1
        assert await page.evaluate("window.nattillsyn.state.cursor") > 0
    finally:
        await page.close()
        await api2.stop()


async def test_paused_resident_raises_nothing(services, page, pool) -> None:
    settings, api = services["settings"], services["api"]
    async with pool.connection() as conn:
        await conn.execute(
            """INSERT INTO monitoring_pauses (resident_id, starts_at, ends_at, reason)
               SELECT id, now() - interval '1 minute', now() + interval '8 hours', 'hemma hos dotter'
               FROM residents WHERE room_id = 'rum-102'"""
        )
    alerting = services["alerting"]
    deadline = time.monotonic() + 10
    while alerting.rooms[(settings.site, "rum-102")].monitored:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await sign_in(page, api.url)
    await page.wait_for_selector(".room[data-room=rum-102][data-monitored=false]")
    await publish_fall(settings, "rum-102")
    await publish_fall(settings, "rum-101")  # the control arrives after the paused one
    await page.locator(".alert[data-room=rum-101]").wait_for(timeout=5_000)
    assert await page.locator(".alert[data-room=rum-102]").count() == 0
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT room FROM alerts")).fetchall()
    assert rows == [("rum-101",)]


async def test_shared_tablet_pin_quick_switch_auto_lock(services, context, pool) -> None:
    settings, api = services["settings"], services["api"]
    await set_pins(api.url)
    page = await context.new_page()
    await page.clock.install()  # the page's time flows, and the test can move it on
    # A unit manager enrolls this browser as the unit's shared tablet.
    await sign_in(page, api.url, "chef")
    await page.click(".tabs button[data-view=more]")
    await page.fill("#enroll-name", "Natt A")
    await page.fill("#enroll-groups", "backup")
    await page.click("#enroll-here")
    await page.wait_for_selector("#tablet-name:has-text('Natt A')")
    assert await page.evaluate("window.nattillsyn.state.tablet.groups") == ["backup"]
    assert any(c["name"] == "nattillsyn_tablet" for c in await context.cookies())
    # Quick switch: the lock screen lists staff with a PIN.
    await page.click("#switch")
    await page.wait_for_selector("#lock:not([hidden]) .staff-btn[data-username=natt]")

    async def pin(user: str, digits: str) -> None:
        await page.click(f".staff-btn[data-username={user}]")
        for d in digits:
            await page.click(f".pinpad button[data-digit='{d}']")
        await page.click(".pinpad button[data-key=ok]")

    await pin("natt", "0000")
    await page.wait_for_selector("#pin-error:has-text('Fel PIN')")
    await page.click(".pinpad button[data-key=cancel]")
    await pin("natt", PINS["natt"])
    await page.wait_for_selector("#app:not([hidden])")
    assert await page.text_content("#who") == "Nattpersonal (demo)"

    # Auto-lock after tablet.auto_lock_s (6 s) without a touch; alerts still show and sound.
    await page.clock.fast_forward(5_000)
    assert await page.locator("#lock").is_hidden()
    await page.clock.fast_forward(1_500)
    await page.wait_for_selector("#lock:not([hidden])", timeout=5_000)
    await page.wait_for_selector("#conn[data-state=online]")
    sounds = await page.evaluate("window.nattillsyn.sounds")
    await publish_fall(settings, "rum-101")
    await page.locator("#lock-alerts .alert[data-room=rum-101]").wait_for(timeout=5_000)
    assert await page.evaluate("window.nattillsyn.sounds") > sounds
    assert await page.locator("#lock-alerts .alert button.ack").is_hidden()
    # The staff session ended on the server too.
    async with pool.connection() as conn:
        ended = await (
            await conn.execute("SELECT end_reason FROM tablet_signins ORDER BY signed_in_at")
        ).fetchall()
    assert [e[0] for e in ended][-1] == "lock"

    # Wrong PINs are rate limited per staff member.
    for _ in range(3):
        await pin("chef", "9999")
        await page.wait_for_selector("#pin-error:not(:empty)")
        await page.click(".pinpad button[data-key=cancel]")
    await pin("chef", PINS["chef"])
    await page.wait_for_selector("#pin-error:has-text('För många fel')")
    await page.click(".pinpad button[data-key=cancel]")
    await pin("natt", PINS["natt"])
    await page.wait_for_selector("#app:not([hidden]) .alert[data-room=rum-101]")
    async with pool.connection() as conn:
        fails = await (
            await conn.execute("SELECT count(*) FROM pin_attempts WHERE NOT ok")
        ).fetchone()
        logins = await (
            await conn.execute("SELECT count(*) FROM audit_log WHERE what = 'tablet pin'")
        ).fetchone()
        locked_read = await (
            await conn.execute("SELECT count(*) FROM audit_log WHERE role = 'tablet'")
        ).fetchone()
    assert fails[0] == 4 and logins[0] == 2 and locked_read[0] >= 1


async def test_practice_rounds_and_visits(services, page, pool) -> None:
    settings, api = services["settings"], services["api"]
    async with pool.connection() as conn:
        now = datetime.now(UTC)
        await conn.execute(
            """INSERT INTO devices (site_id, id, room_id, availability, last_heartbeat, last_seen)
               VALUES (%s, 'cam-1', 'rum-101', 'online', %s, %s)""",
            (settings.site, now, now),
        )
        await conn.execute(
            """INSERT INTO room_states (ts, id, site, room, device, session, seq, state, since,
                                        confidence, payload)
               VALUES (now(), gen_random_uuid(), %s, 'rum-101', 'cam-1', 1, 1, 'in_bed',
                       now() - interval '30 minutes', 0.9, '{}')""",
            (settings.site,),
        )
    await sign_in(page, api.url, "chef")
    await page.click(".tabs button[data-view=more]")
    await page.click("#practice-round")
    await page.click(".tabs button[data-view=rounds]")
    ok = page.locator(".round[data-practice=true] .round-entry[data-decision=digital_ok]")
    await ok.wait_for(timeout=5_000)
    assert "I sängen, lugn sedan" in await ok.inner_text()
    assert await page.is_visible("#practice-flag")
    await page.click("#lang")  # English renders the entry from its fields
    assert "In bed, calm since" in await ok.inner_text()
    await page.click("#lang")
    # rum-102 has no device: no data → a physical visit, registered from the round.
    need = page.locator(".round-entry[data-decision=physical_needed]")
    assert "Inga data" in await need.inner_text()
    await need.locator("button").click()
    await need.locator("button:has-text('Klar')").click()
    await need.locator("button:has-text('✓')").wait_for(timeout=5_000)
    await page.click(".round .confirm-round")
    await page.locator(".round-entry .confirmed").first.wait_for(timeout=5_000)
    # A practice alert: clearly marked, acknowledged like a real one.
    await page.click(".tabs button[data-view=more]")
    await page.select_option("#practice-room", "rum-101")
    await page.click("#practice-alert")
    await page.click(".tabs button[data-view=board]")
    practice = page.locator(".alert[data-practice=true][data-status=firing]")
    await practice.wait_for(timeout=5_000)
    assert "ÖVNING" in await practice.inner_text()
    async with pool.connection() as conn:
        r = await (
            await conn.execute(
                """SELECT count(*) FILTER (WHERE practice), count(*) FILTER (WHERE NOT practice),
                          count(*) FILTER (WHERE confirmed_by = 'chef') FROM rounds"""
            )
        ).fetchone()
        v = await (
            await conn.execute("SELECT practice, reason, ended_at IS NOT NULL FROM visits")
        ).fetchall()
        a = await (await conn.execute("SELECT practice FROM alerts")).fetchall()
    assert r == (2, 0, 2)
    assert v == [(True, "round", True)]
    assert a == [(True,)]


async def test_silent_alerting_service_is_shown_and_sounded(services, page) -> None:
    settings, api = services["settings"], services["api"]
    await sign_in(page, api.url)
    assert await page.is_hidden("#system-warning")
    await services["alerting"].stop()  # alerting dies; the api and the tablet live on
    t0 = time.monotonic()
    warning = page.locator("#system-warning:not([hidden])")
    await warning.wait_for(timeout=30_000)
    print(f"alerting silent → warning on the tablet after {time.monotonic() - t0:.1f} s")
    assert "Larmtjänsten svarar inte" in await warning.inner_text()
    log = await page.evaluate("window.nattillsyn.soundLog")
    assert any(e["why"] == "system" for e in log)
    again = AlertingService(settings)
    await again.start()
    try:
        await page.locator("#system-warning[hidden]").wait_for(state="attached", timeout=30_000)
    finally:
        await again.stop()
