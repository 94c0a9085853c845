"""Single sign-on through a real OpenID Provider (panva's oidc-provider on Node, loopback),
driven in Chromium: every page and role, and every way a sign-in must be refused."""

from __future__ import annotations

import json

import aiohttp
import pytest
from admin_helpers import Client, running_api

from nattillsyn.api.oidc_testprovider import TestProvider, oidc_settings, unavailable
from nattillsyn.settings import OidcSettings

pytestmark = pytest.mark.browser
PAGES = ["/", "/admin", "/report"]
ROLE_USERS = {
    "night_staff": "anna.natt",
    "unit_manager": "cecilia.chef",
    "evaluator": "ulla.utv",
    "sysadmin": "ivar.it",
}


@pytest.fixture(scope="module")
def provider():
    why = unavailable()
    if why:
        pytest.skip(f"no test OpenID Provider: {why}")
    p = TestProvider()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
async def sso(settings, provider):
    """The api with single sign-on against the test provider (which knows its callback)."""
    settings = settings.model_copy(
        update={"oidc": OidcSettings(**oidc_settings(provider.issuer, settings.site))}
    )
    async with running_api(settings) as (api, s):
        base = api.url.rstrip("/")
        provider.control(
            "setup",
            redirect_uri=f"{base}/sso/callback",
            post_logout_redirect_uri=[f"{base}{p}" for p in PAGES],
        )
        yield api, s


async def sign_in(browser, api, user: str, page_path: str = "/admin", context=None):
    """Open the page, follow 'Logga in med …', sign in at the provider; the page after."""
    ctx = context or await browser.new_context()
    page = await ctx.new_page()
    await page.goto(api.url.rstrip("/") + page_path)
    await page.click("#sso-login:visible, #sso-login-lock:visible")  # form or lock screen
    await page.wait_for_selector("input[name=login]")  # the provider's own sign-in page
    await page.fill("input[name=login]", user)
    await page.fill("input[name=password]", "any")
    await page.click("button[type=submit]")
    await page.wait_for_url(lambda u: "127.0.0.1" in u and api.url.rstrip("/") in u)
    await page.wait_for_load_state()
    return page


async def me(page) -> dict:
    return await page.evaluate(
        "fetch('/api/v1/me').then(async r => ({status: r.status, body: await r.json()}))"
    )


async def refused(page, reason: str) -> str:
    el = page.locator("#sso-refused")
    await el.wait_for()
    assert await el.get_attribute("data-reason") == reason
    return await page.locator("#sso-message").inner_text()


async def audit_rows(pool, sub: str) -> list[tuple]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT username, role, action, purpose, detail FROM audit_log "
            "WHERE action = 'login' AND detail->>'sub' = %s ORDER BY id",
            (sub,),
        )
        return await cur.fetchall()


async def test_every_page_and_role_signs_in_through_the_provider(sso, browser, pool) -> None:
    api, s = sso
    for role, user in ROLE_USERS.items():
        for path in PAGES:
            ctx = await browser.new_context()
            try:
                page = await sign_in(browser, api, user, path, ctx)
                assert page.url == api.url.rstrip("/") + path
                got = await me(page)
                assert got["status"] == 200, got
                assert got["body"]["role"] == role
                sites = got["body"]["sites"]
                assert sites == ([] if role == "sysadmin" else [s.site])
                if path != "/admin" or role in ("unit_manager", "sysadmin"):
                    # The page itself shows it is signed in (the admin page is for managers).
                    await page.wait_for_selector("#logout:not([hidden])", timeout=10_000)
            finally:
                await ctx.close()
    rows = await audit_rows(pool, "cecilia.chef")
    assert len(rows) == len(PAGES) and all(r[3] == "sign-in" for r in rows)
    assert rows[0][4]["issuer"] == s.oidc.issuer
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT username, role, auth_provider, external_subject, active FROM users "
            "WHERE auth_provider LIKE 'oidc:%%' ORDER BY username"
        )
        accounts = await cur.fetchall()
    # Provisioned just in time, once each, whatever page they came from.
    assert [(a[0], a[1], a[3], a[4]) for a in accounts] == sorted(
        (u, r, u, True) for r, u in ROLE_USERS.items()
    )
    assert accounts[0][2] == f"oidc:{s.oidc.issuer}"


async def test_logout_ends_the_session_and_signs_out_at_the_provider(sso, browser) -> None:
    api, _ = sso
    page = await sign_in(browser, api, "cecilia.chef")
    await page.click("#logout:visible")  # the page's own button
    await page.wait_for_url(lambda u: "/session/end" in u)  # the provider asks to confirm
    await page.click("button[autofocus], button[type=submit]")
    await page.wait_for_url(api.url.rstrip("/") + "/admin")
    assert (await me(page))["status"] == 401
    # The provider's session is gone too: signing in asks for the password again.
    await page.click("#sso-login")
    await page.wait_for_selector("input[name=login]")


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("wrong_aud", "wrong_audience"), ("expired", "expired_token"), ("bad_sig", "bad_signature")],
)
async def test_bad_id_tokens_are_refused(sso, browser, pool, provider, mode, reason) -> None:
    api, _ = sso
    provider.control("tamper", mode=mode)
    page = await sign_in(browser, api, "cecilia.chef")
    message = await refused(page, reason)
    assert "identitetsbiljett" in message
    assert (await me(page))["status"] == 401
    rows = await audit_rows(pool, "cecilia.chef") if mode != "bad_sig" else []
    if mode == "bad_sig":  # the claims of a forged token are not trusted: no sub in the row
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT username, role, action, purpose, detail FROM audit_log "
                "WHERE detail->>'refused' = %s",
                (reason,),
            )
            rows = await cur.fetchall()
    assert [(r[2], r[3], r[4]["refused"]) for r in rows] == [("login", "sign-in refused", reason)]


async def test_replayed_state_is_refused(sso, browser, pool) -> None:
    api, _ = sso
    ctx = await browser.new_context()
    callbacks: list[str] = []
    ctx.on("request", lambda r: callbacks.append(r.url) if "/sso/callback" in r.url else None)
    page = await sign_in(browser, api, "cecilia.chef", context=ctx)
    assert (await me(page))["status"] == 200 and len(callbacks) == 1
    await page.goto(callbacks[0])  # the same code and state again
    assert "redan använd" in await refused(page, "replayed_state")
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM audit_log WHERE detail->>'refused' = 'replayed_state'"
        )
        assert (await cur.fetchone())[0] == 1
    await ctx.close()


async def test_unmapped_user_is_refused_with_a_clear_page(sso, browser, pool) -> None:
    api, _ = sso
    page = await sign_in(browser, api, "olle.okand", "/")
    assert "ingen roll i nattillsyn" in await refused(page, "unmapped")
    rows = await audit_rows(pool, "olle.okand")
    assert [(r[0], r[3], r[4]["refused"]) for r in rows] == [
        ("olle.okand", "sign-in refused", "unmapped")
    ]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM users WHERE username = 'olle.okand'")
        assert (await cur.fetchone())[0] == 0  # nothing provisioned


async def test_provider_deactivates_at_next_sign_in(sso, browser, pool, provider) -> None:
    api, _ = sso
    first = await sign_in(browser, api, "nils.natt", "/")
    assert (await me(first))["status"] == 200
    # IT removes Nils from the night staff group: his next sign-in deactivates the account
    # and ends the session he still has.
    provider.control("user", id="nils.natt", groups="ekonomi")
    page = await sign_in(browser, api, "nils.natt", "/")
    assert "stängts av" in await refused(page, "deactivated")
    assert (await me(first))["status"] == 401
    # The provider marks Anna inactive (the active claim): refused and deactivated too.
    await sign_in(browser, api, "anna.natt", "/")
    provider.control("user", id="anna.natt", groups="nattillsyn-nattpersonal", active="false")
    page = await sign_in(browser, api, "anna.natt", "/")
    assert "avstängt" in await refused(page, "deactivated")
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT username, active FROM users WHERE username IN ('nils.natt', 'anna.natt') "
            "ORDER BY username"
        )
        assert await cur.fetchall() == [("anna.natt", False), ("nils.natt", False)]
    for sub in ("nils.natt", "anna.natt"):
        rows = await audit_rows(pool, sub)
        assert [r[4].get("refused") for r in rows] == [None, "deactivated"]
    provider.control("user", id="nils.natt", groups="nattillsyn-nattpersonal")
    provider.control("user", id="anna.natt", groups="nattillsyn-nattpersonal", active="true")


async def test_rotated_keys(sso, browser, pool, provider) -> None:
    api, _ = sso
    page = await sign_in(browser, api, "cecilia.chef")  # the api now caches the JWKS
    assert (await me(page))["status"] == 200
    provider.control("rotate")
    # A token with the new key: the unknown key id makes the api fetch the JWKS again.
    page = await sign_in(browser, api, "cecilia.chef")
    assert (await me(page))["status"] == 200
    # A token signed with the retired key (no longer published) is refused.
    provider.control("tamper", mode="old_key")
    page = await sign_in(browser, api, "cecilia.chef")
    await refused(page, "unknown_key")
    rows = await audit_rows(pool, "cecilia.chef")
    assert [r[4].get("refused") for r in rows] == [None, None]  # the forged one: see below
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM audit_log WHERE detail->>'refused' = 'unknown_key'"
        )
        assert (await cur.fetchone())[0] == 1


async def test_local_passwords_off(settings, provider) -> None:
    s = settings.model_copy(
        update={
            "oidc": OidcSettings(
                **oidc_settings(provider.issuer, settings.site, local_passwords=False)
            )
        }
    )
    async with running_api(s) as (api, _):
        c = Client(api.url)
        try:
            r = await c.login("chef")
            assert r.status == 403
            assert "local passwords are off" in json.loads(await r.text())["detail"]
            r = await c.http.get(f"{api.url}api/v1/login/options")
            assert (await r.json())["local_passwords"] is False
        finally:
            await c.close()


async def test_shared_tablet_pin_return_after_sso(sso, browser, pool) -> None:
    """Staff who signed in through the provider on an enrolled tablet come back with a PIN."""
    api, _ = sso
    base = api.url.rstrip("/")
    ctx = await browser.new_context()
    # A unit manager (single sign-on) enrolls this browser as the unit's shared tablet.
    page = await sign_in(browser, api, "cecilia.chef", "/", ctx)
    r = await page.evaluate(
        """fetch('/api/v1/tablets', {method: 'POST', headers: {'Content-Type':
           'application/json'}, body: JSON.stringify({name: 'Natt SSO', groups: []})})
           .then(r => r.status)"""
    )
    assert r in (200, 201), r
    # Anna signs in through the provider on this tablet and chooses a PIN (no password).
    await page.goto(f"{base}/sso/logout?next=/")
    page = await sign_in(browser, api, "anna.natt", "/", ctx)
    await page.wait_for_selector("#app:not([hidden])", timeout=10_000)
    assert (await me(page))["body"]["username"] == "anna.natt"
    await page.click(".tabs button[data-view=more]")
    await page.fill("#pin-new", "2580")  # the password field stays empty
    await page.click("#pin-save")
    await page.wait_for_selector("#pin-msg:not(:empty)")
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM staff_pins p JOIN users u ON u.id = p.user_id "
            "WHERE u.username = 'anna.natt'"
        )
        assert (await cur.fetchone())[0] == 1, await page.text_content("#pin-msg")
    # Quick switch: the lock screen lists her; her PIN signs her in again.
    await page.click("#switch")
    await page.wait_for_selector("#lock:not([hidden]) .staff-btn[data-username='anna.natt']")
    await page.click(".staff-btn[data-username='anna.natt']")
    for d in "2580":
        await page.click(f".pinpad button[data-digit='{d}']")
    await page.click(".pinpad button[data-key=ok]")
    await page.wait_for_selector("#app:not([hidden])")
    got = await me(page)
    assert got["body"]["username"] == "anna.natt"
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM audit_log WHERE what = 'tablet pin' AND username = 'anna.natt'"
        )
        assert (await cur.fetchone())[0] == 1

    # Nils signed in through the provider elsewhere, not on this tablet: his PIN is refused.
    other = await sign_in(browser, api, "nils.natt", "/")
    assert (
        await other.evaluate(
            """fetch('/api/v1/me/pin', {method: 'POST', headers: {'Content-Type':
           'application/json'}, body: JSON.stringify({pin: '1470'})}).then(r => r.status)"""
        )
        == 204
    )
    refused_ = await page.evaluate(
        """fetch('/api/v1/tablet/signin', {method: 'POST', headers: {'Content-Type':
           'application/json'}, body: JSON.stringify({username: 'nils.natt', pin: '1470'})})
           .then(async r => ({status: r.status, body: await r.json()}))"""
    )
    assert refused_["status"] == 403
    assert "organisation account on this tablet" in refused_["body"]["detail"]
    await ctx.close()


async def test_sign_in_started_elsewhere_is_refused(sso, browser, pool) -> None:
    """Login CSRF: a sign-in started by someone else cannot finish in this browser."""
    api, _ = sso
    async with aiohttp.ClientSession() as http:  # the attacker starts a sign-in
        r = await http.get(f"{api.url}sso/login?next=/admin", allow_redirects=False)
        assert r.status == 302
        authorize = r.headers["Location"]
    page = await (await browser.new_context()).new_page()
    await page.goto(authorize)  # ... and lures the victim to finish it
    await page.fill("input[name=login]", "cecilia.chef")
    await page.fill("input[name=password]", "any")
    await page.click("button[type=submit]")
    assert "annan webbläsare" in await refused(page, "state_mismatch")
    assert (await me(page))["status"] == 401
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM audit_log WHERE detail->>'refused' = 'state_mismatch'"
        )
        assert (await cur.fetchone())[0] == 1
