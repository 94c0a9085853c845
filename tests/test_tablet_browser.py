"""The tablet page in a real Chromium: sign in, an alert appears with sound, acknowledge, resolve."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from nattillsyn.demo import DEMO_USERS
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Event, TopicKind, Topics, encode

pytestmark = pytest.mark.browser


async def test_alert_ack_resolve_in_browser(services, browser, pool) -> None:
    settings, api = services["settings"], services["api"]
    page = await browser.new_page()
    await page.goto(api.url)
    user, password = DEMO_USERS[0][:2]
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", password)
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#conn[data-state=online]", timeout=10_000)
    await page.wait_for_selector(".room[data-room=rum-101]")
    assert await page.is_hidden("#login")

    topics = Topics(settings.topic_root)
    pub = MqttClient(settings.mqtt_url, f"pub-{uuid.uuid4().hex[:8]}")
    await pub.start()
    try:
        ev = Event(
            site=settings.site, room="rum-101", device="cam-1", session=1, seq=1,
            event_id=uuid.uuid4(), type="possible_fall", phase="new", start=datetime.now(UTC),
        )  # fmt: skip
        await pub.publish(
            topics.device(settings.site, "rum-101", "cam-1", TopicKind.event), encode(ev)
        )
    finally:
        await pub.stop()

    alert = page.locator(".alert[data-status=firing]")
    await alert.wait_for(timeout=5_000)
    assert "Möjligt fall" in await alert.locator(".title").inner_text()
    assert "Rum 101" in await alert.locator(".title").inner_text()
    assert await page.evaluate("window.nattillsyn.sounds") >= 1
    assert await page.get_attribute(".room[data-room=rum-101]", "data-alert") == "true"

    await alert.locator("button.ack").click()
    acked = page.locator(".alert[data-status=acknowledged]")
    await acked.wait_for(timeout=5_000)
    assert user in await acked.locator(".meta").inner_text()

    await acked.locator("select.outcome").select_option("false_alarm")
    await acked.locator("button.resolve").click()
    await page.locator(".alert[data-status=resolved]").wait_for(timeout=5_000)
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT status, outcome, acknowledged_by FROM alerts")
        ).fetchone()
        assert row == ("resolved", "false_alarm", user)
        # Reading the board and acting on the alert are in the access log.
        actions = {
            r[0] for r in await (await conn.execute("SELECT what FROM audit_log")).fetchall()
        }
        assert {"board", "alert acknowledge", "alert resolve"} <= actions

    # English is one tap away.
    await page.click("#lang")
    assert await page.text_content("#board h2 >> nth=0") == "Alerts"
