"""Names are text, never markup: a resident, room and unit named with HTML are shown as
those characters on the tablet, the administration page, the evaluation page (all in
Chromium) and in the downloadable report, and no element or script comes from them."""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
import pytest
from admin_helpers import PASSWORDS, Client, running_api
from psycopg import sql

from nattillsyn.app.demo import OTHER_UNIT

pytestmark = pytest.mark.browser

RESIDENT = "<img src=x onerror=alert(1)> Ada <b>x</b>"
ROOM = "<b>x</b> Rum 101"
UNIT = "<b>x</b> Enhet <img src=x onerror=alert(1)>"
OTHER = "<img src=x onerror=alert(1)> Andra <b>x</b>"

# Elements the names would make if parsed as HTML, and what they would do.
INJECTED = """() => ({
  img: document.querySelectorAll('img[src="x"]').length,
  b: [...document.querySelectorAll("b")].filter((b) => b.textContent === "x").length,
  text: document.body.innerText,
})"""


async def _rename(settings) -> None:
    async with await psycopg.AsyncConnection.connect(settings.database_url) as c:
        await c.execute(
            sql.SQL("SET search_path TO {}, public").format(
                sql.Identifier(settings.database_schema)
            )
        )
        await c.execute("UPDATE sites SET name = %s WHERE id = %s", (UNIT, settings.site))
        await c.execute("UPDATE sites SET name = %s WHERE id = %s", (OTHER, OTHER_UNIT[0]))
        await c.execute(
            "UPDATE rooms SET name = %s WHERE site_id = %s AND id = 'rum-101'",
            (ROOM, settings.site),
        )
        await c.execute(
            "UPDATE residents SET display_name = %s WHERE site_id = %s AND room_id = 'rum-101'",
            (RESIDENT, settings.site),
        )
        # The evaluator sees both units, so the report compares them.
        await c.execute(
            "INSERT INTO user_sites (user_id, site_id) "
            "SELECT id, %s FROM users WHERE username = 'utv'",
            (OTHER_UNIT[0],),
        )
        await c.commit()


async def _as_text(page, *names: str) -> str:
    """The page shows every name as its characters and made nothing from them."""
    found = await page.evaluate(INJECTED)
    assert found["img"] == 0 and found["b"] == 0, found
    for name in names:
        assert name in found["text"], (name, found["text"][:2000])
    return found["text"]


async def _sign_in(browser, dialogs: list[str], url: str, user: str):
    """A new page in its own context (its own session), signed in as `user`."""
    context = await browser.new_context()
    page = await context.new_page()
    page.on("dialog", lambda d: dialogs.append(d.message))  # Playwright dismisses them
    await page.goto(url)
    await page.fill("#login input[name=username]", user)
    await page.fill("#login input[name=password]", PASSWORDS[user])
    await page.click("#login button[type=submit]")
    return page


async def test_names_with_markup_are_text_everywhere(settings, browser) -> None:
    dialogs: list[str] = []
    async with running_api(settings) as (api, s):
        await _rename(s)

        # Tablet: the room and its resident.
        page = await _sign_in(browser, dialogs, api.url, "natt")
        room = page.locator(".room[data-room=rum-101]")
        await room.wait_for(timeout=10_000)
        assert await room.locator(".resident").inner_text() == RESIDENT
        assert await room.locator(".name").inner_text() == ROOM
        await _as_text(page, RESIDENT, ROOM)

        # Administration: the residents list, the resident's page and the units.
        page = await _sign_in(browser, dialogs, f"{api.url}admin", "chef")
        await page.wait_for_selector("#tab-residents:not([hidden])")
        row = page.locator("#tab-residents tr", has_text="Ada")
        await row.first.wait_for(timeout=10_000)
        assert RESIDENT in await row.first.inner_text()
        assert UNIT in await row.first.inner_text()
        await _as_text(page, RESIDENT, UNIT)
        await page.click("#nav button[data-tab=units]")
        unit = page.locator(f".unit[data-unit={s.site}]")
        await unit.wait_for(timeout=10_000)
        assert UNIT in await unit.locator("h3").inner_text()
        await _as_text(page, UNIT, ROOM, RESIDENT)

        # Evaluation: the unit choice and the report, with the other unit compared.
        page = await _sign_in(browser, dialogs, f"{api.url}report", "utv")
        await page.wait_for_selector("#report", timeout=20_000)
        assert set(await page.locator("#unit option").all_inner_texts()) == {UNIT, OTHER}
        await page.select_option("#unit", s.site)
        await page.click("#query button[type=submit]")
        await page.wait_for_selector("#report-title:has-text('Enhet')", timeout=20_000)
        assert UNIT in await page.inner_text("#report-title")
        units = await page.inner_text("#units")
        assert UNIT in units and OTHER in units
        await _as_text(page, UNIT, OTHER)

        # The report as downloaded (and as `nattillsyn report` writes it), opened in Chromium.
        c = Client(api.url)
        try:
            assert (await c.login("utv")).status == 200
            last = date.today() - timedelta(days=1)
            r = await c.call(
                "GET",
                "/api/v1/evaluation/report.html",
                params={"site": s.site, "from": str(last - timedelta(days=6)), "to": str(last)},
            )
            assert r.status == 200 and r.headers["Content-Disposition"].startswith("attachment")
            report = await r.text()
        finally:
            await c.close()
        assert "<img" not in report and "&lt;img src=x onerror=alert(1)&gt;" in report
        page = await (await browser.new_context()).new_page()
        page.on("dialog", lambda d: dialogs.append(d.message))
        await page.set_content(report)
        assert UNIT in await page.title()
        await _as_text(page, UNIT, OTHER)
    assert dialogs == []
