"""`nattillsyn demo`: the whole system on embedded defaults, in one process.

Without URLs it starts a private PostgreSQL (Debian's server binaries) and an
in-process MQTT 3.1.1 broker (amqtt); with NATTILLSYN_DATABASE_URL /
NATTILLSYN_MQTT_URL set it uses those. Then it migrates, seeds a demo care home,
starts ingest, alerting and the api, and replays the shared clips as rooms.
Ctrl-C stops everything, servers included.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from nattillsyn import log
from nattillsyn.alerting.service import AlertingService
from nattillsyn.api.app import ApiService
from nattillsyn.api.auth import hash_password
from nattillsyn.api.oidc_testprovider import TestProvider, oidc_settings
from nattillsyn.app.embedded import InProcessBroker, PrivatePostgres
from nattillsyn.app.simulate import make_agents, room_ids
from nattillsyn.db.migrate import migrate
from nattillsyn.evaluation.demo import seed_history as generate
from nattillsyn.ingest.service import IngestService
from nattillsyn.service import run_until_signalled
from nattillsyn.settings import OidcSettings, Settings

logger = log.get(__name__)

SITE_NAME = "Solgården (demo)"
DEMO_USERS = [
    # username, password, display name, role
    ("natt", "natt-demo", "Nattpersonal (demo)", "night_staff"),
    ("chef", "chef-demo", "Enhetschef (demo)", "unit_manager"),
]
# Seeded by seed_admin (the demo and the administration tests), in the demo unit.
ADMIN_DEMO_USERS = [
    ("admin", "admin-demo", "Systemadministratör (demo)", "sysadmin"),
    ("utv", "utv-demo", "Verksamhetsutvecklare (demo)", "evaluator"),
]
# A second unit with its own staff: what one unit sees, the other does not.
OTHER_UNIT = ("bjorkbacken", "Björkbacken (demo)")
OTHER_UNIT_USERS = [
    ("chef2", "chef2-demo", "Enhetschef Björkbacken (demo)", "unit_manager"),
    ("natt2", "natt2-demo", "Nattpersonal Björkbacken (demo)", "night_staff"),
]
ORGANISATION = ("demo-kommun", "Demo kommun, vård och omsorg")
# Personal PINs for the shared-tablet sign-in (enroll the tablet first: sign in as chef,
# Mer → Registrera den här surfplattan).
DEMO_PINS = {"natt": "2580", "chef": "1470"}
# Made-up names: the demo holds no real person's data.
DEMO_RESIDENTS = ["Astrid L.", "Gunnar P.", "Maj-Britt S.", "Sven O.", "Elsa K.", "Bertil N."]
DEMO_FALL_CONFIRM_S = 10.0  # shorter than the 30 s default so a fall shows within a minute
_HASHES: dict[str, str] = {}


def _demo_hash(password: str) -> str:
    """argon2 is slow by design; each demo password is hashed once per process."""

    if password not in _HASHES:
        _HASHES[password] = hash_password(password)
    return _HASHES[password]


async def seed(settings: Settings, rooms: list[str]) -> None:
    """Idempotently create the demo site, its rooms and the demo users."""

    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        await conn.execute(
            sql.SQL("SET search_path TO {}, public").format(
                sql.Identifier(settings.database_schema)
            )
        )
        await conn.execute(
            "INSERT INTO sites (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (settings.site, SITE_NAME),
        )
        for i, room in enumerate(rooms):
            await conn.execute(
                "INSERT INTO rooms (site_id, id, name) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (settings.site, room, "Rum " + room.removeprefix("rum-")),
            )
            # One included resident per room, monitored round the clock so the demo
            # shows alerts at any hour; agreed tillsyn times 23, 02 (digital) and 05 (physical).
            cur = await conn.execute(
                """INSERT INTO residents (site_id, room_id, display_name, monitoring_active,
                                          monitor_from, monitor_to)
                   SELECT %s, %s, %s, true, '00:00', '00:00'
                   WHERE NOT EXISTS (SELECT 1 FROM residents
                                     WHERE site_id = %s AND room_id = %s AND active)
                   RETURNING id""",
                (settings.site, room, DEMO_RESIDENTS[i % len(DEMO_RESIDENTS)], settings.site, room),
            )
            row = await cur.fetchone()
            if row is not None:
                for at, mode in (("23:00", "digital"), ("02:00", "digital"), ("05:00", "physical")):
                    await conn.execute(
                        "INSERT INTO tillsyn_times (resident_id, at_time, mode) VALUES (%s, %s, %s)",
                        (row[0], at, mode),
                    )
        for username, password, name, role in DEMO_USERS:
            user_id = await _user(conn, username, password, name, role, settings.site)
            if username in DEMO_PINS:
                await conn.execute(
                    """INSERT INTO staff_pins (user_id, pin_hash) VALUES (%s, %s)
                       ON CONFLICT (user_id) DO NOTHING""",
                    (user_id, _demo_hash(DEMO_PINS[username])),
                )
        await seed_inclusions(conn)
        await conn.commit()


async def seed_history(settings: Settings) -> None:
    """Months of synthetic nights behind the evaluation report (once per database)."""

    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True
    ) as conn:
        await conn.execute(
            sql.SQL("SET search_path TO {}, public").format(
                sql.Identifier(settings.database_schema)
            )
        )
        if await generate(conn, settings.site):
            print("generated synthetic history for the evaluation report", flush=True)


async def run_demo(settings: Settings, rooms: int = 4, port: int = 8080, sso: bool = False) -> int:

    pg: PrivatePostgres | None = None
    broker: InProcessBroker | None = None
    history: asyncio.Task | None = None
    state: Path | None = None
    provider = None
    try:
        updates: dict = {}
        if sso:  # the test OpenID Provider on loopback (npm's oidc-provider; any password)
            provider = await asyncio.to_thread(TestProvider)
            updates["oidc"] = OidcSettings(**oidc_settings(provider.issuer, settings.site))
        if settings.database_url is None:
            pg = PrivatePostgres()
            updates["database_url"] = await asyncio.to_thread(pg.start)
        if settings.mqtt_url is None:
            broker = InProcessBroker()
            updates["mqtt_url"] = await broker.start()
        api = settings.api.model_copy(update={"port": port, "cookie_secure": False})
        settings = settings.model_copy(update={**updates, "api": api})

        await migrate(settings.database_url, settings.database_schema)
        await seed(settings, room_ids(rooms))
        await seed_admin(settings)
        await seed_devices(settings, room_ids(rooms), {"fall_confirm_s": DEMO_FALL_CONFIRM_S})
        # Months of history for the report take a minute: made while the rooms already run.
        # In a thread with its own loop: generating is CPU work that must not stall alerting.
        history = asyncio.create_task(
            asyncio.to_thread(asyncio.run, seed_history(settings)), name="demo-history"
        )
        state = Path(tempfile.mkdtemp(prefix="nattillsyn-demo-"))  # edge queues, as on a Pi
        settings = settings.model_copy(
            update={"edge": settings.edge.model_copy(update={"state_dir": state})}
        )

        api_service = ApiService(settings)
        services = [IngestService(settings), AlertingService(settings), api_service]
        services += make_agents(settings, rooms, fall_confirm_s=DEMO_FALL_CONFIRM_S)

        def announce() -> None:
            sso_text = ""
            if provider is not None:
                port_ = api_service.port
                bases = [f"http://{h}:{port_}" for h in ("127.0.0.1", "localhost")]
                provider.control(
                    "setup",
                    redirect_uri=[f"{b}/sso/callback" for b in bases],
                    post_logout_redirect_uri=[
                        f"{b}{p}" for b in bases for p in ("/", "/admin", "/report")
                    ],
                )
                sso_text = (
                    f"  Single sign-on: test provider at {provider.issuer} ('Logga in med "
                    "Testkommunens konto', any password):\n"
                    "    anna.natt (night_staff)  cecilia.chef (unit_manager)  "
                    "ulla.utv (evaluator)  ivar.it (sysadmin)  olle.okand (no role: refused)\n"
                )
            logins = "\n".join(
                f"    {u} / {p}   PIN {DEMO_PINS.get(u, '-')}   ({r})"
                for u, p, _, r in _all_logins()
            )
            print(
                f"\nnattillsyn demo is running: {rooms} rooms replaying real clips.\n"
                f"  Tablet page:  {api_service.url}\n"
                f"  Admin page:   {api_service.url}admin\n"
                f"  Evaluation:   {api_service.url}report  (utv / utv-demo; its months of "
                "synthetic history are ready about a minute after start)\n"
                f"  Demo logins:\n{logins}\n{sso_text}"
                "  Shared tablet: sign in as chef, Mer → Registrera den här surfplattan; "
                "staff then sign in by PIN.\n"
                f"  Database:     {'private PostgreSQL' if pg else 'configured URL'}; "
                f"broker: {'in-process amqtt' if broker else 'configured URL'}\n"
                "  Ctrl-C stops everything.\n",
                flush=True,
            )

        await run_until_signalled(services, on_started=announce)
    finally:
        if history is not None and not history.done():
            history.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await history
        if state is not None:
            shutil.rmtree(state, ignore_errors=True)
        if broker is not None:
            with contextlib.suppress(Exception):
                await broker.stop()
        if pg is not None:
            await asyncio.to_thread(pg.stop)
        if provider is not None:
            provider.stop()
    return 0


def _all_logins() -> list[tuple[str, str, str, str]]:
    seen: dict[str, tuple[str, str, str, str]] = {}
    for login in DEMO_USERS + ADMIN_DEMO_USERS + OTHER_UNIT_USERS:
        seen.setdefault(login[0], login)
    return list(seen.values())


async def _connect(settings: Settings):

    conn = await psycopg.AsyncConnection.connect(settings.database_url)
    await conn.execute(
        sql.SQL("SET search_path TO {}, public").format(sql.Identifier(settings.database_schema))
    )
    return conn


async def _user(conn, username: str, password: str, name: str, role: str, site: str) -> int:
    cur = await conn.execute(
        """INSERT INTO users (username, display_name, role, password_hash)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (username) DO UPDATE SET display_name = EXCLUDED.display_name
           RETURNING id""",
        (username, name, role, _demo_hash(password)),
    )
    user_id = (await cur.fetchone())[0]
    await conn.execute(
        "INSERT INTO user_sites (user_id, site_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (user_id, site),
    )
    return user_id


async def seed_admin(settings: Settings) -> None:
    """Idempotently add the organisation, a system administrator and an evaluator, and a
    second unit with its own staff and residents not yet included (the demo and the
    administration tests; the plain `seed` stays one unit)."""
    async with await _connect(settings) as conn:
        org_id, org_name = ORGANISATION
        await conn.execute(
            "INSERT INTO organisations (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (org_id, org_name),
        )
        unit_id, unit_name = OTHER_UNIT
        await conn.execute(
            "INSERT INTO sites (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (unit_id, unit_name),
        )
        await conn.execute(
            "UPDATE sites SET organisation_id = %s WHERE id IN (%s, %s)",
            (org_id, settings.site, unit_id),
        )
        for i, room in enumerate(("rum-201", "rum-202")):
            await conn.execute(
                "INSERT INTO rooms (site_id, id, name) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (unit_id, room, "Rum " + room.removeprefix("rum-")),
            )
            await conn.execute(
                """INSERT INTO residents (site_id, room_id, display_name)
                   SELECT %s, %s, %s WHERE NOT EXISTS (
                       SELECT 1 FROM residents WHERE site_id = %s AND room_id = %s AND active)""",
                (unit_id, room, ["Ingrid B.", "Olof H."][i], unit_id, room),
            )
        seeded = {u for u, *_ in DEMO_USERS}
        for username, password, name, role in ADMIN_DEMO_USERS:
            if username not in seeded:  # another module's seed may already make it
                await _user(conn, username, password, name, role, settings.site)
        for username, password, name, role in OTHER_UNIT_USERS:
            await _user(conn, username, password, name, role, unit_id)
        await seed_inclusions(conn)
        await conn.commit()


async def seed_inclusions(conn) -> None:
    """The inclusion record behind each seeded resident's monitoring: residents seeded as
    monitored get a decision, an accepted offer, the default criteria and a consent; the
    others start the workflow."""
    cur = await conn.execute(
        "SELECT id, monitoring_active FROM residents r WHERE NOT EXISTS "
        "(SELECT 1 FROM inclusions i WHERE i.resident_id = r.id)"
    )
    for rid, monitored in await cur.fetchall():
        if not monitored:
            await conn.execute("INSERT INTO inclusions (resident_id) VALUES (%s)", (rid,))
            continue
        await conn.execute(
            """INSERT INTO inclusions (resident_id, decision_reference, decision_date,
                   offered_at, offered_by, offer_answer, answered_at)
               VALUES (%s, %s, current_date - 30, now(), 'demo', 'accepted', now())""",
            (rid, f"SoL-DEMO-{str(rid)[:8]}"),
        )
        await conn.execute(
            """INSERT INTO inclusion_answers (resident_id, criterion, answer, answered_by)
               SELECT %s, key, 'yes', 'demo' FROM inclusion_criteria WHERE site_id IS NULL""",
            (rid,),
        )
        await conn.execute(
            """INSERT INTO consents (resident_id, given_by, relation, given_at, scope, recorded_by)
               VALUES (%s, 'Den boende själv (demo)', 'resident', now() - interval '30 days',
                       '["alerts_to_staff", "digital_rounds", "motion_analysis"]', 'demo')""",
            (rid,),
        )


async def seed_devices(settings: Settings, rooms: list[str], device_settings: dict) -> None:
    """Provision the demo's simulated room devices so administration manages their config."""

    async with await _connect(settings) as conn:
        for room in rooms:
            await conn.execute(
                """INSERT INTO devices (site_id, id, room_id, name, status, provisioned_by,
                                        settings, claimed_at)
                   VALUES (%s, %s, %s, %s, 'active', 'demo', %s, now())
                   ON CONFLICT (site_id, id) DO NOTHING""",
                (settings.site, f"cam-{room}", room, f"Kamera {room}", Jsonb(device_settings)),
            )
            await conn.execute(
                """INSERT INTO device_assignments (site_id, device_id, room_id)
                   SELECT %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM device_assignments
                       WHERE site_id = %s AND device_id = %s)""",
                (settings.site, f"cam-{room}", room, settings.site, f"cam-{room}"),
            )
        await conn.commit()
