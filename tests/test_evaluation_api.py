"""The evaluator api and report page on synthetic data (real PostgreSQL, broker and Chromium)."""

from __future__ import annotations

import io
import json
import os
from datetime import date, timedelta

import aiohttp
import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from nattillsyn.api.app import ApiService
from nattillsyn.api.auth import hash_password
from nattillsyn.evaluation import synthetic
from nattillsyn.evaluation.load import load

# Storage-related: every database test runs on plain PostgreSQL and on TimescaleDB.
pytestmark = pytest.mark.both_backends

LAST = date.today() - timedelta(days=1)
NIGHTS = 21
UNITS = synthetic.make_units(2, 6, seed=2)  # bjorkbacken (5 of 6 consent to evaluation), ekhagen
SMALL = synthetic.UnitSpec(
    site="liten",
    name="Liten enhet (syntetisk)",
    residents=synthetic.make_units(1, 3, seed=9)[0].residents,
)
CONSENTING = sum(r.evaluation_consent for r in UNITS[0].residents)
USERS = [  # username, role, units
    ("eva", "evaluator", ["bjorkbacken", "liten"]),
    ("ekh", "evaluator", ["ekhagen"]),
    ("natt", "night_staff", ["bjorkbacken"]),
]


@pytest.fixture
async def api(settings):
    settings = settings.model_copy(
        update={
            "api": settings.api.model_copy(update={"port": 0, "cookie_secure": False}),
            "evaluation": settings.evaluation.model_copy(update={"bootstrap_samples": 200}),
        }
    )
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as c:
        await c.execute(
            sql.SQL("SET search_path TO {}, public").format(
                sql.Identifier(settings.database_schema)
            )
        )
        first = LAST - timedelta(days=NIGHTS - 1)
        await load(
            c, synthetic.generate([*UNITS, SMALL], first, NIGHTS, seed=5, baseline_nights=14)
        )
        for name, role, units in USERS:
            cur = await c.execute(
                "INSERT INTO users (username, display_name, role, password_hash) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                (name, name.title(), role, hash_password("pw")),
            )
            uid = (await cur.fetchone())[0]
            for s in units:
                await c.execute(
                    "INSERT INTO user_sites (user_id, site_id) VALUES (%s, %s)", (uid, s)
                )
    svc = ApiService(settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def session(api, user: str) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    r = await http.post(f"{api.url}api/v1/login", json={"username": user, "password": "pw"})
    assert r.status == 200
    return http


async def test_report_for_evaluator_is_scoped_suppressed_and_pseudonymised(api, settings):
    http = await session(api, "eva")
    async with http:
        r = await http.get(f"{api.url}api/v1/evaluation/units")
        assert [u["site"] for u in (await r.json())["units"]] == ["bjorkbacken", "liten"]
        q = {"site": "bjorkbacken", "from": str(LAST - timedelta(days=NIGHTS - 1)), "to": str(LAST)}
        r = await http.get(f"{api.url}api/v1/evaluation/report", params=q)
        assert r.status == 200, await r.text()
        text = await r.text()
        rep = json.loads(text)
        s = rep["summary"]
        assert s["residents"] == 6 and s["resident_nights"] > 100
        assert 0 < s["avoided_share"]["value"] < 1
        assert (
            s["avoided_share"]["low"] <= s["avoided_share"]["value"] <= s["avoided_share"]["high"]
        )
        assert rep["before_after"]["before"]["resident_nights"] == 6 * 14
        # comparison: only units this user may see; the small one suppressed
        assert [u["site"] for u in rep["units"]] == ["bjorkbacken", "liten"]
        assert rep["units"][1]["suppressed"] and "residents" not in rep["units"][1]
        # no resident id or name leaves; pseudonyms differ from one export to the next
        for res in UNITS[0].residents:
            assert str(res.id) not in text and res.name not in text
        again = await (await http.get(f"{api.url}api/v1/evaluation/report", params=q)).json()
        p1 = {r["pseudonym"] for r in rep["residents"]}
        p2 = {r["pseudonym"] for r in again["residents"]}
        assert CONSENTING >= 5, "seed must give k residents with consent to evaluation"
        assert len(p1) == CONSENTING and not p1 & p2
        # a unit below k shows nothing but the suppression
        r = await http.get(f"{api.url}api/v1/evaluation/report", params={**q, "site": "liten"})
        small = await r.json()
        assert (
            small["summary"]["suppressed"]
            and small.get("residents") is None
            and not small.get("nights")
        )
        # someone else's unit
        r = await http.get(f"{api.url}api/v1/evaluation/report", params={**q, "site": "ekhagen"})
        assert r.status == 403 and r.content_type == "application/problem+json"
        r = await http.get(f"{api.url}api/v1/evaluation/report", params={**q, "from": "yesterday"})
        assert r.status == 400
        # exports
        r = await http.get(
            f"{api.url}api/v1/evaluation/export/residents", params={**q, "format": "csv"}
        )
        assert r.status == 200 and (await r.text()).startswith("pseudonym,")
        r = await http.get(
            f"{api.url}api/v1/evaluation/export/units", params={**q, "format": "parquet"}
        )
        assert pq.read_table(io.BytesIO(await r.read())).num_rows == 2
        r = await http.get(f"{api.url}api/v1/evaluation/report.html", params=q)
        assert r.status == 200 and "Utvärdering av digital nattillsyn" in await r.text()
        assert r.headers["Content-Disposition"].startswith("attachment")
        # What the evaluation page shows: the same document, in English on request, read.
        r = await http.get(
            f"{api.url}api/v1/evaluation/report.html",
            params={**q, "lang": "en", "disposition": "inline"},
        )
        page = await r.text()
        assert r.status == 200 and "Content-Disposition" not in r.headers
        assert "Evaluation of digital night supervision" in page and "Utvärdering" not in page
        for bad in ({"lang": "de"}, {"disposition": "download"}):
            r = await http.get(f"{api.url}api/v1/evaluation/report.html", params={**q, **bad})
            assert r.status == 400 and r.content_type == "application/problem+json"
    async with await psycopg.AsyncConnection.connect(settings.database_url) as c:
        await c.execute(
            sql.SQL("SET search_path TO {}, public").format(
                sql.Identifier(settings.database_schema)
            )
        )
        cur = await c.execute(
            "SELECT action, what, purpose FROM audit_log WHERE username = 'eva' ORDER BY id"
        )
        logged = await cur.fetchall()
    assert ("read", "evaluation report", "evaluation") in logged
    assert ("export", "evaluation residents", "evaluation") in logged
    # the download is an export; what the page shows (inline) is a read, like the JSON
    assert logged.count(("export", "evaluation report html", "evaluation")) == 1


async def test_roles_and_openapi(api):
    http = await session(api, "natt")
    async with http:
        r = await http.get(f"{api.url}api/v1/evaluation/report")
        assert r.status == 403
        doc = await (await http.get(f"{api.url}api/v1/openapi.json")).json()
        assert "/api/v1/evaluation/report" in doc["paths"]
        assert "Report" in doc["components"]["schemas"]
        r = await http.get(f"{api.url}report")
        assert r.status == 200 and "report.js" in await r.text()
    async with aiohttp.ClientSession() as anon:
        assert (await anon.get(f"{api.url}api/v1/evaluation/units")).status == 401


async def test_baseline_import_all_or_nothing(api):
    http = await session(api, "ekh")
    async with http:
        csrf = {c.key: c.value for c in http.cookie_jar}.get("nattillsyn_csrf", "")
        r = await http.post(
            f"{api.url}api/v1/evaluation/baseline", params={"site": "ekhagen"}, json={"csv": "x"}
        )
        assert r.status == 403  # a change needs the session's CSRF token
        http.headers["X-CSRF-Token"] = csrf
        good = "unit,resident,night,planned_visits,unplanned_visits,minutes\nekhagen,X-1,2024-05-01,3,1,15\n"
        r = await http.post(
            f"{api.url}api/v1/evaluation/baseline", params={"site": "ekhagen"},
            json={"csv": good, "source": "gamla-listor.csv"},
        )  # fmt: skip
        assert r.status == 201, await r.text()
        body = await r.json()
        assert body["rows"] == 1 and body["import_id"]
        bad = good + "ekhagen,19450312-1234,2024-05-02,3,0,\nbjorkbacken,X-2,2024-05-02,3,0,\n"
        r = await http.post(
            f"{api.url}api/v1/evaluation/baseline", params={"site": "ekhagen"}, json={"csv": bad}
        )
        assert r.status == 422 and r.content_type == "application/problem+json"
        problem = await r.json()
        assert [e["line"] for e in problem["errors"]] == [3, 4]
        overview = await (
            await http.get(f"{api.url}api/v1/evaluation/baseline", params={"site": "ekhagen"})
        ).json()
        # the synthetic baseline (14 nights × 6) plus the one good row; the bad file added none
        assert overview["nights"] == 6 * 14 + 1
        assert overview["imports"][0]["source"] == "gamla-listor.csv"
        r = await http.get(f"{api.url}api/v1/evaluation/baseline", params={"site": "nowhere"})
        assert r.status == 403  # not a unit of theirs (and none at all)
        r = await http.post(
            f"{api.url}api/v1/evaluation/baseline",
            params={"site": "bjorkbacken"},
            json={"csv": good},
        )
        assert r.status == 403


@pytest.mark.browser
async def test_report_page_in_browser(api, page):
    await page.goto(f"{api.url}report")
    await page.fill("input[name=username]", "eva")
    await page.fill("input[name=password]", "pw")
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#report:not([hidden])", timeout=20000)
    key = await page.inner_text("#key")
    assert "Fysiska besök per boendenatt" in key and "Physical visits per resident-night" in key
    assert await page.locator("#trend svg polyline").count() == 2
    assert await page.locator("#residents tr").count() == 1 + CONSENTING  # header + pseudonyms
    assert "Liten enhet" in await page.inner_text("#units")
    if os.environ.get("NATTILLSYN_SCREENSHOTS"):  # a folder: save a screenshot there
        path = os.path.join(os.environ["NATTILLSYN_SCREENSHOTS"], "evaluation.png")
        await page.screenshot(path=path, full_page=True)
    await page.click("#lang")  # the report comes again, in English
    await page.wait_for_selector("#report[data-lang=en]")
    assert (await page.inner_text("#trend-section h2")) == "Per week"
    assert "Fysiska" not in await page.inner_text("#key")
    # the small unit: suppressed, nothing per resident
    await page.select_option("#unit", "liten")
    await page.click("#query button[type=submit]")
    await page.wait_for_selector("#report-title:has-text('Liten enhet')", timeout=20000)
    assert await page.is_hidden("#res-section")
