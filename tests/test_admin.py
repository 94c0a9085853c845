"""Administration over HTTP on real services: inclusion workflow, versioning, device configs."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import zipfile
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from admin_helpers import Client, rows_of, running_api, signed_in

from nattillsyn.edge.claim import run as claim_run
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import DeviceConfig, TopicKind, Topics, decode
from nattillsyn.settings import load

CONSENT = {
    "given_by": "Anna Andersson",
    "relation": "resident",
    "given_at": "2026-01-05T10:00:00+01:00",
    "scope": ["motion_analysis", "alerts_to_staff"],
    "cohabitants": [],
}


async def include(c, rid: str) -> dict:
    """Walk the whole workflow; returns the detail after the last step."""
    await c.ok(
        "PUT", f"/api/v1/residents/{rid}/decision", {"reference": "SoL-1", "date": "2026-01-02"}
    )
    await c.ok("PUT", f"/api/v1/residents/{rid}/offer", {"answer": "accepted"})
    crit = (await c.ok("GET", f"/api/v1/residents/{rid}"))["criteria"]
    await c.ok(
        "PUT",
        f"/api/v1/residents/{rid}/criteria",
        {"answers": [{"key": k["key"], "answer": "yes"} for k in crit]},
    )
    await c.ok(
        "PUT",
        f"/api/v1/residents/{rid}/schedule",
        {
            "monitor_from": "00:00",
            "monitor_to": "00:00",
            "tillsyn_times": [
                {"at": "23:00", "mode": "digital"},
                {"at": "03:00", "mode": "physical"},
            ],
        },
    )
    return await c.ok("POST", f"/api/v1/residents/{rid}/consents", CONSENT, status=201)


@asynccontextmanager
async def config_sets(s):
    """A client subscribed to every device's `config/set`."""
    sub = MqttClient(s.mqtt_url, f"sub-{uuid.uuid4().hex[:8]}")
    await sub.start()
    try:
        await sub.subscribe(Topics(s.topic_root).subscription(TopicKind.config_set))
        yield sub
    finally:
        await sub.stop()


async def add_resident(c, site: str, room: str, name: str) -> dict:
    body = {"site": site, "display_name": name, "room": room}
    return await c.ok("POST", "/api/v1/residents", body, status=201)


async def add_device(c, site: str, device: str, room: str, status: int = 201, **more) -> dict:
    body = {"id": device, "room": room, **more}
    return await c.ok("POST", f"/api/v1/units/{site}/devices", body, status=status)


async def test_inclusion_workflow_drives_monitoring_and_device_config(settings, pool) -> None:
    async with (
        running_api(settings, rooms=("rum-101", "rum-102")) as (api, s),
        config_sets(s) as sub,
        signed_in(api, "chef") as c,
    ):
        await c.ok(
            "POST", f"/api/v1/units/{s.site}/rooms", {"id": "rum-103", "name": "Rum 103"},
            status=201,
        )  # fmt: skip
        prov = await add_device(c, s.site, "cam-x", "rum-103", settings={"fall_confirm_s": 12})
        assert len(prov["claim_code"]) == 14
        # Nobody is included in rum-103 yet: the device is told not to monitor.
        msg = await sub.next_message(timeout=5)
        cfg = decode(DeviceConfig, msg.payload)
        assert msg.topic.endswith(f"{s.site}/rum-103/cam-x/config/set")
        assert (cfg.monitoring, cfg.version, cfg.fall_confirm_s) == (False, 1, 12)

        r = await add_resident(c, s.site, "rum-103", "Test Person")
        rid = r["resident"]["id"]
        assert r["inclusion"]["offer_default"] == "digital"
        assert r["resident"]["missing"][:2] == ["decision", "offer_answer"]
        detail = await include(c, rid)
        assert detail["resident"]["monitoring_active"] is True
        assert detail["resident"]["missing"] == []
        assert detail["device"]["id"] == "cam-x"
        cfg = decode(DeviceConfig, (await sub.next_message(timeout=5)).payload)
        assert (cfg.monitoring, cfg.version) == (True, 2)
        # The resident's window goes along, so the device stops on time even offline.
        res = detail["schedule"]
        window = (res["monitor_from"][:5], res["monitor_to"][:5])
        assert cfg.timezone == "Europe/Stockholm"
        assert [(w.start, w.end) for w in cfg.schedule] == (
            [] if window[0] == window[1] else [window]
        )

        # A pause for tonight stops monitoring; ending it resumes.
        d = await c.ok("POST", f"/api/v1/residents/{rid}/pauses", {}, status=201)
        assert d["resident"]["monitoring_now"] is False
        cfg = decode(DeviceConfig, (await sub.next_message(timeout=5)).payload)
        assert (cfg.monitoring, cfg.version) == (False, 3)
        pause_id = d["pauses"][0]["id"]
        await c.ok("POST", f"/api/v1/residents/{rid}/pauses/{pause_id}/end", {})
        cfg = decode(DeviceConfig, (await sub.next_message(timeout=5)).payload)
        assert (cfg.monitoring, cfg.version) == (True, 4)

        # Withdrawal stops monitoring at once.
        consent_id = detail["consents"][0]["id"]
        d = await c.ok(
            "POST",
            f"/api/v1/residents/{rid}/consents/{consent_id}/withdraw",
            {"reason": "ångrat sig"},
        )
        assert d["resident"]["monitoring_active"] is False
        assert "consent_withdrawn" in d["resident"]["missing"]
        cfg = decode(DeviceConfig, (await sub.next_message(timeout=5)).payload)
        assert (cfg.monitoring, cfg.version) == (False, 5)
        await c.ok(
            "POST",
            f"/api/v1/residents/{rid}/consents/{consent_id}/withdraw",
            {},
            status=409,
        )

        # A cohabitant who does not consent blocks monitoring.
        d = await c.ok(
            "POST",
            f"/api/v1/residents/{rid}/consents",
            CONSENT | {"cohabitants": [{"name": "Make", "consented": False}]},
            status=201,
        )
        assert d["resident"]["missing"] == ["cohabitant_consent"]

        # Moving to another room and back keeps the inclusion; discharge ends it.
        d = await c.ok("PATCH", f"/api/v1/residents/{rid}", {"room": "rum-101"}, status=409)
        hist = await c.ok("GET", f"/api/v1/residents/{rid}/history")
        changes = [h["change"] for h in hist["changes"]]
        assert changes[:3] == ["consent given", "consent withdrawn", "pause ended"]
        assert "create" in changes and "decision" in changes
        w = next(h for h in hist["changes"] if h["change"] == "consent withdrawn")
        assert w["username"] == "chef" and w["role"] == "unit_manager"
        assert w["before"]["monitoring_active"] is True
        assert w["after"]["monitoring_active"] is False
        assert w["after"]["section"][0]["withdrawn_by"] == "chef"
    rows = await rows_of(pool, "SELECT action, what FROM audit_log WHERE username = 'chef'")
    assert ("change", "resident consent withdrawn") in rows
    assert ("read", "resident history") in rows


# The pusher wakes by the database's clock, the test reads its own: the same host here.
CLOCK_SKEW = timedelta(milliseconds=100)


async def test_schedule_boundary_pushes_without_admin_action(settings, pool) -> None:
    """The window opens by the clock alone: the pusher wakes at the boundary."""
    async with (
        running_api(settings, rooms=("rum-101",)) as (api, s),
        config_sets(s) as sub,
        signed_in(api, "chef") as c,
    ):
        await c.ok(
            "POST",
            f"/api/v1/units/{s.site}/rooms",
            {"id": "rum-9", "name": "Rum 9"},
            status=201,
        )
        await add_device(c, s.site, "cam-9", "rum-9")
        assert decode(DeviceConfig, (await sub.next_message(5)).payload).monitoring is False
        r = await add_resident(c, s.site, "rum-9", "B")
        rid = r["resident"]["id"]
        await include(c, rid)
        assert decode(DeviceConfig, (await sub.next_message(5)).payload).monitoring is True
        # A pause that starts in 1.5 s and ends 1.5 s later: two pushes by the clock.
        now = datetime.now(UTC)
        await c.ok(
            "POST",
            f"/api/v1/residents/{rid}/pauses",
            {
                "starts_at": (now + timedelta(seconds=1.5)).isoformat(),
                "ends_at": (now + timedelta(seconds=3)).isoformat(),
            },
            status=201,
        )
        off = decode(DeviceConfig, (await sub.next_message(6)).payload)
        t_off = datetime.now(UTC)
        on = decode(DeviceConfig, (await sub.next_message(6)).payload)
        t_on = datetime.now(UTC)
        assert (off.monitoring, on.monitoring) == (False, True)
        assert on.version == off.version + 1
        # Not before its boundary (how soon after is for the timeouts above, not a bound here).
        assert t_off >= now + timedelta(seconds=1.5) - CLOCK_SKEW
        assert t_on >= now + timedelta(seconds=3) - CLOCK_SKEW


async def test_units_rooms_users_and_criteria(settings, pool) -> None:
    async with running_api(settings) as (api, s):
        async with signed_in(api, "admin") as a:
            unit = await a.ok("POST", "/api/v1/units", {"id": "nyby", "name": "Nyby"}, status=201)
            assert unit["timezone"] == "Europe/Stockholm"
            await a.ok("POST", "/api/v1/units", {"id": "nyby", "name": "Nyby"}, status=409)
            await a.ok(
                "POST",
                "/api/v1/units",
                {"id": "x", "name": "X", "timezone": "Mars/Base"},
                status=422,
            )
            units = await a.ok("GET", "/api/v1/units")
            assert units["organisation"]["id"] == "demo-kommun"
            assert {u["id"] for u in units["units"]} >= {s.site, "bjorkbacken", "nyby"}
            u = await a.ok(
                "POST",
                "/api/v1/users",
                {"username": "ny.chef", "display_name": "Ny chef", "role": "unit_manager",
                 "password": "långt-lösenord-1", "sites": ["nyby"]},
                status=201,
            )  # fmt: skip
        async with signed_in(api, "ny.chef", "långt-lösenord-1") as m:
            # Only the manager's own unit.
            units = await m.ok("GET", "/api/v1/units")
            assert [x["id"] for x in units["units"]] == ["nyby"]
            await m.ok(
                "POST", "/api/v1/units/nyby/rooms", {"id": "r1", "name": "Rum 1"}, status=201
            )
            await m.ok(
                "POST", f"/api/v1/units/{s.site}/rooms", {"id": "r1", "name": "x"}, status=404
            )
            crit = await m.ok("GET", "/api/v1/units/nyby/criteria")
            assert crit["own"] is False and len(crit["criteria"]) == 4
            new = await m.ok(
                "PUT",
                "/api/v1/units/nyby/criteria",
                {"criteria": [{"key": "sleeps_alone", "label_sv": "Sover ensam", "label_en": "Sleeps alone"}]},
            )  # fmt: skip
            assert new["own"] is True and [c["key"] for c in new["criteria"]] == ["sleeps_alone"]
            # Managers create night staff for their unit, not sysadmins, not elsewhere.
            await m.ok(
                "POST", "/api/v1/users",
                {"username": "natt.ny", "display_name": "N", "role": "night_staff",
                 "password": "0123456789", "sites": ["nyby"]}, status=201,
            )  # fmt: skip
            await m.ok(
                "POST", "/api/v1/users",
                {"username": "evil", "display_name": "E", "role": "sysadmin",
                 "password": "0123456789", "sites": ["nyby"]}, status=403,
            )  # fmt: skip
            await m.ok(
                "POST", "/api/v1/users",
                {"username": "evil2", "display_name": "E", "role": "night_staff",
                 "password": "0123456789", "sites": [s.site]}, status=403,
            )  # fmt: skip
            await m.ok("PATCH", f"/api/v1/users/{u['id']}", {"active": False}, status=409)
        async with signed_in(api, "admin") as a:
            await a.ok("PATCH", f"/api/v1/users/{u['id']}", {"active": False})
    sessions = await rows_of(
        pool,
        "SELECT count(*) FROM user_sessions s JOIN users u ON u.id = s.user_id "
        "WHERE u.username = 'ny.chef'",
    )
    assert sessions == [(0,)]  # deactivation signs the user out everywhere


async def test_audit_view_csv_and_export(settings, pool) -> None:
    async with running_api(settings) as (api, s):
        async with signed_in(api, "chef") as c:
            res = await c.ok("GET", "/api/v1/residents")
            rid = res["residents"][0]["id"]
            await c.ok("GET", f"/api/v1/residents/{rid}", headers={"X-Purpose": "vårdplanering"})
            page = await c.ok("GET", f"/api/v1/audit?resident={rid}")
            assert page["entries"][0]["purpose"] == "vårdplanering"
            assert {e["what"] for e in page["entries"]} >= {"resident", "residents"}
            r = await c.call("GET", f"/api/v1/audit.csv?site={s.site}")
            text = await r.text()
            assert r.status == 200 and r.content_type == "text/csv"
            assert text.splitlines()[0].startswith("id,at,username,role,action,purpose,what")
            assert "vårdplanering" in text
            await c.ok("GET", "/api/v1/audit?site=bjorkbacken", status=404)
            idx = await c.ok("GET", "/api/v1/export")
            assert {"residents", "consents", "audit_log", "events"} <= {
                d["name"] for d in idx["datasets"]
            }
            rows = await c.ok("GET", "/api/v1/export/residents?format=json")
            assert rows and {r["site_id"] for r in rows} == {s.site}
            r = await c.call("GET", "/api/v1/export.zip")
            assert r.status == 200 and r.content_type == "application/zip"
            z = zipfile.ZipFile(io.BytesIO(await r.read()))
            manifest = json.loads(z.read("manifest.json"))
            assert manifest["units"] == [s.site]
            assert manifest["datasets"]["residents"]["rows"] == len(rows)
            assert "password_hash" not in z.read("users.csv").decode()
        async with signed_in(api, "chef2") as c2:
            rows = await c2.ok("GET", "/api/v1/export/residents?format=json")
            assert {r["site_id"] for r in rows} == {"bjorkbacken"}
            page = await c2.ok("GET", "/api/v1/audit")
            assert all(e["site"] == "bjorkbacken" for e in page["entries"])


async def test_csrf_origin_and_login_throttle(settings, pool) -> None:
    async with running_api(settings) as (api, s):
        async with signed_in(api, "chef") as c:
            body = {"site": s.site, "display_name": "X"}
            r = await c.call("POST", "/api/v1/residents", body, headers={"X-CSRF-Token": "wrong"})
            assert r.status == 403
            r = await c.call(
                "POST", "/api/v1/residents", body, headers={"Origin": "https://evil.example"}
            )
            assert r.status == 403
            r = await c.call(
                "POST", "/api/v1/residents", body, headers={"Sec-Fetch-Site": "cross-site"}
            )
            assert r.status == 403
            r = await c.call(
                "POST", "/api/v1/residents", body, headers={"Origin": api.url.rstrip("/")}
            )
            assert r.status == 201
            cookie = next(k for k in c.http.cookie_jar if k.key == "nattillsyn_session")
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
        async with signed_in(api, "natt"):
            pass
        bad = Client(api.url)
        try:
            statuses = [(await bad.login("natt", "fel")).status for _ in range(6)]
            assert statuses == [401] * 5 + [429]
            r = await bad.login("natt")  # even the right password waits now
            assert r.status == 429 and int(r.headers["Retry-After"]) > 0
            assert (await bad.login("chef")).status == 200  # other accounts are not locked
        finally:
            await bad.close()


async def test_claim_cli_and_replacement_keep_room_history(settings, pool, tmp_path) -> None:
    topics = Topics(settings.topic_root)
    async with running_api(settings) as (api, s), signed_in(api, "chef") as c:
        p = await add_device(c, s.site, "cam-old", "rum-101", name="Kamera 101")
        assert p["device"]["status"] == "provisioned"
        # The Pi side: `nattillsyn claim CODE --api URL` writes its edge settings.
        out = tmp_path / "edge.toml"
        rc = await asyncio.to_thread(claim_run, api.url, p["claim_code"], str(out))
        assert rc == 0 and oct(out.stat().st_mode)[-3:] == "600"
        edge = load(out)
        assert (edge.site, edge.edge.room, edge.edge.device) == (s.site, "rum-101", "cam-old")
        assert edge.topic_root == s.topic_root and "dev-site-1-cam-old:" in edge.mqtt_url
        assert await asyncio.to_thread(claim_run, api.url, p["claim_code"], str(out)) == 1

        async with pool.connection() as conn:  # the room's history so far
            await conn.execute(
                """INSERT INTO room_states (ts, id, site, room, device, session, seq, state,
                                                since, confidence, payload)
                       VALUES (now(), gen_random_uuid(), %s, 'rum-101', 'cam-old', 1, 1, 'present',
                               now(), 1, '{}')""",
                (s.site,),
            )
        sub = MqttClient(s.mqtt_url, f"sub-{uuid.uuid4().hex[:8]}")
        await sub.start()
        try:
            await sub.subscribe(topics.device(s.site, "rum-101", "cam-old", TopicKind.config_set))
            while decode(DeviceConfig, (await sub.next_message(5)).payload).monitoring is False:
                pass  # the retained config from provisioning: monitoring (resident included)
            r = await c.ok(
                "POST", f"/api/v1/units/{s.site}/devices/cam-old/replace",
                {"new_id": "cam-new"}, status=201,
            )  # fmt: skip
            assert r["device"]["replaces"] == "cam-old" and r["device"]["room"] == "rum-101"
            # The old device is told to stop, should it ever come back.
            last = decode(DeviceConfig, (await sub.next_message(5)).payload)
            assert last.monitoring is False
        finally:
            await sub.stop()
        devices = (await c.ok("GET", f"/api/v1/devices?site={s.site}"))["devices"]
        by_id = {d["id"]: d for d in devices}
        assert by_id["cam-old"]["status"] == "retired" and by_id["cam-old"]["health"] == "retired"
        assert by_id["cam-new"]["status"] == "provisioned"
        await add_device(c, s.site, "cam-3", "rum-101", status=409)
        # Another unit's devices are not even listed, nor reachable.
        await c.ok("GET", "/api/v1/units/bjorkbacken/devices/cam-x", status=404)
    rows = await rows_of(
        pool,
        "SELECT device_id, to_at IS NULL FROM device_assignments WHERE room_id = 'rum-101' "
        "ORDER BY from_at",
    )
    assert rows == [("cam-old", False), ("cam-new", True)]
    n = await rows_of(pool, "SELECT count(*) FROM room_states WHERE room = 'rum-101'")
    assert n == [(1,)]  # the room keeps its history
    revoked = "SELECT revoked_at IS NOT NULL FROM mqtt_accounts WHERE device_id = 'cam-old'"
    assert await rows_of(pool, revoked) == [(True,)]


async def test_export_includes_tables_other_modules_add_without_secrets(settings, pool) -> None:
    async with pool.connection() as conn:  # as another module's migration would
        await conn.execute(
            "CREATE TABLE gadgets (site text, name text, token_hash text, api_secret text)"
        )
        await conn.execute(
            "INSERT INTO gadgets VALUES ('site-1', 'a', 'h1', 's1'), ('bjorkbacken', 'b', 'h2', 's2')"
        )
    async with running_api(settings) as (api, _s):
        async with signed_in(api, "chef") as c:
            names = {d["name"] for d in (await c.ok("GET", "/api/v1/export"))["datasets"]}
            assert "gadgets" in names and "user_sessions" not in names
            assert "organisations" not in names  # no unit column: not a manager's
            rows = await c.ok("GET", "/api/v1/export/gadgets?format=json")
            assert rows == [{"site": "site-1", "name": "a"}]
            await c.ok("GET", "/api/v1/export/organisations", status=403)
            await c.ok("GET", "/api/v1/export/user_sessions", status=404)
        async with signed_in(api, "admin") as a:
            rows = await a.ok("GET", "/api/v1/export/gadgets?format=json")
            assert len(rows) == 2 and all(set(r) == {"site", "name"} for r in rows)
            orgs = await a.ok("GET", "/api/v1/export/organisations?format=json")
            assert {o["id"] for o in orgs} >= {"default", "demo-kommun"}


async def test_move_and_discharge(settings, pool) -> None:
    async with running_api(settings) as (api, s), signed_in(api, "chef") as c:
        await c.ok("POST", f"/api/v1/units/{s.site}/rooms", {"id": "r-a", "name": "A"}, status=201)
        await c.ok("POST", f"/api/v1/units/{s.site}/rooms", {"id": "r-b", "name": "B"}, status=201)
        r = await add_resident(c, s.site, "r-a", "M")
        rid = r["resident"]["id"]
        d = await include(c, rid)
        assert d["resident"]["monitoring_now"] is True
        d = await c.ok("PATCH", f"/api/v1/residents/{rid}", {"room": "r-b"})
        assert d["resident"]["room"] == "r-b" and d["resident"]["monitoring_now"] is True
        await c.ok("PATCH", f"/api/v1/residents/{rid}", {"room": "rum-101"}, status=409)
        rooms = {x["id"]: x for x in (await c.ok("GET", f"/api/v1/units/{s.site}/rooms"))["rooms"]}
        assert rooms["r-a"].get("resident_id") is None and rooms["r-b"]["resident_id"] == rid
        d = await c.ok("PATCH", f"/api/v1/residents/{rid}", {"active": False})
        assert d["resident"]["monitoring_active"] is False and d["resident"].get("room") is None
        assert "discharged" in d["resident"]["missing"]
        await c.ok("PATCH", f"/api/v1/units/{s.site}/rooms/r-b", {"active": False})
