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

from nattillsyn import log
from nattillsyn.settings import Settings

logger = log.get(__name__)

SITE_NAME = "Solgården (demo)"
DEMO_USERS = [
    # username, password, display name, role
    ("natt", "natt-demo", "Nattpersonal (demo)", "night_staff"),
    ("chef", "chef-demo", "Enhetschef (demo)", "unit_manager"),
]
# Personal PINs for the shared-tablet sign-in (enroll the tablet first: sign in as chef,
# Mer → Registrera den här surfplattan).
DEMO_PINS = {"natt": "2580", "chef": "1470"}
# Made-up names: the demo holds no real person's data.
DEMO_RESIDENTS = ["Astrid L.", "Gunnar P.", "Maj-Britt S.", "Sven O.", "Elsa K.", "Bertil N."]
DEMO_FALL_CONFIRM_S = 10.0  # shorter than the 30 s default so a fall shows within a minute


async def seed(settings: Settings, rooms: list[str]) -> None:
    """Idempotently create the demo site, its rooms and the demo users."""
    import psycopg
    from psycopg import sql

    from nattillsyn.api.auth import hash_password

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
            cur = await conn.execute(
                """INSERT INTO users (username, display_name, role, password_hash)
                   VALUES (%s, %s, %s, %s)
                   ON CONFLICT (username) DO UPDATE SET display_name = EXCLUDED.display_name
                   RETURNING id""",
                (username, name, role, hash_password(password)),
            )
            user_id = (await cur.fetchone())[0]
            await conn.execute(
                "INSERT INTO user_sites (user_id, site_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (user_id, settings.site),
            )
            if username in DEMO_PINS:
                await conn.execute(
                    """INSERT INTO staff_pins (user_id, pin_hash) VALUES (%s, %s)
                       ON CONFLICT (user_id) DO NOTHING""",
                    (user_id, hash_password(DEMO_PINS[username])),
                )
        await conn.commit()


async def run_demo(settings: Settings, rooms: int = 4, port: int = 8080) -> int:
    from nattillsyn.alerting.service import AlertingService
    from nattillsyn.api.app import ApiService
    from nattillsyn.db.migrate import migrate
    from nattillsyn.embedded import InProcessBroker, PrivatePostgres
    from nattillsyn.ingest.service import IngestService
    from nattillsyn.service import run_until_signalled
    from nattillsyn.simulate import make_agents, room_ids

    pg: PrivatePostgres | None = None
    broker: InProcessBroker | None = None
    try:
        updates: dict = {}
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

        api_service = ApiService(settings)
        services = [IngestService(settings), AlertingService(settings), api_service]
        services += make_agents(settings, rooms, fall_confirm_s=DEMO_FALL_CONFIRM_S)

        def announce() -> None:
            logins = "\n".join(
                f"    {u} / {p}   PIN {DEMO_PINS.get(u, '-')}   ({r})" for u, p, _, r in DEMO_USERS
            )
            print(
                f"\nnattillsyn demo is running: {rooms} rooms replaying real clips.\n"
                f"  Tablet page:  {api_service.url}\n"
                f"  Demo logins:\n{logins}\n"
                "  Shared tablet: sign in as chef, Mer → Registrera den här surfplattan; "
                "staff then sign in by PIN.\n"
                f"  Database:     {'private PostgreSQL' if pg else 'configured URL'}; "
                f"broker: {'in-process amqtt' if broker else 'configured URL'}\n"
                "  Ctrl-C stops everything.\n",
                flush=True,
            )

        await run_until_signalled(services, on_started=announce)
    finally:
        if broker is not None:
            with contextlib.suppress(Exception):
                await broker.stop()
        if pg is not None:
            await asyncio.to_thread(pg.stop)
    return 0
