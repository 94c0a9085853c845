"""Fixtures on real services.

Order for each: the URL in NATTILLSYN_DATABASE_URL / NATTILLSYN_MQTT_URL, else
the machine's local server (127.0.0.1:5432 database `test`; 127.0.0.1:1883),
else a private instance started from binaries on PATH. Every test gets its own
schema and its own topic root, so tests never see each other's data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import playwright
import psycopg
import pytest
from backends import BACKENDS, timescale_missing
from playwright.async_api import async_playwright
from psycopg import sql

from nattillsyn.alerting.service import AlertingService
from nattillsyn.api.app import ApiService
from nattillsyn.app.demo import seed
from nattillsyn.app.embedded import PrivateMosquitto, PrivatePostgres, port_open
from nattillsyn.db.migrate import migrate
from nattillsyn.db.pool import make_pool
from nattillsyn.ingest.service import IngestService
from nattillsyn.settings import Settings, default_clips_dir

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"
LOCAL_MQTT = "mqtt://127.0.0.1:1883"
CLIPS = Path(os.environ.get("NATTILLSYN_CLIPS_DIR") or default_clips_dir())


def _pg_reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Storage-related modules run every database test once per backend (ids [plain], [timescaledb]).
    if metafunc.definition.get_closest_marker("both_backends") and (
        "database_url" in metafunc.fixturenames
    ):
        metafunc.parametrize("database_url", BACKENDS, indirect=True, scope="session")


def _server_url(
    env: str, local: str, reachable: Callable[[], bool], private: Callable[[], object]
) -> Iterator[str]:
    """The URL in `env`, else `local` if it answers, else a private server for the session."""
    url = os.environ.get(env)
    if url:
        yield url
        return
    if reachable():
        yield local
        return
    server = private()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def plain_database_url() -> Iterator[str]:
    yield from _server_url(
        "NATTILLSYN_DATABASE_URL",
        LOCAL_PG,
        lambda: _pg_reachable(LOCAL_PG),
        lambda: PrivatePostgres(timescale=False),
    )


@pytest.fixture(scope="session")
def timescale_cluster() -> Iterator[PrivatePostgres]:
    """A private cluster with TimescaleDB preloaded, started once for the session."""
    pg = PrivatePostgres(timescale=True)
    if not pg.timescale:
        pg.stop()
        timescale_missing(
            f"TimescaleDB is not installed for the PostgreSQL server binaries in {pg.bin} "
            "(./dev test builds it from ../shared/vendor when run as root)"
        )
    pg.start()
    try:
        with psycopg.connect(pg.url, autocommit=True) as conn:
            version = conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
        assert version, "TimescaleDB preloaded but not available as an extension"
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> str:
    """Plain PostgreSQL, or TimescaleDB where a module is marked `both_backends`."""
    backend = getattr(request, "param", "plain")
    if backend == "timescaledb":
        return request.getfixturevalue("timescale_cluster").url
    return request.getfixturevalue("plain_database_url")


def _backend_of(request: pytest.FixtureRequest) -> str:
    callspec = getattr(request.node, "callspec", None)
    return callspec.params.get("database_url", "plain") if callspec else "plain"


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The test's database backend: `plain` or `timescaledb`."""
    return _backend_of(request)


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    yield from _server_url(
        "NATTILLSYN_MQTT_URL", LOCAL_MQTT, lambda: port_open("127.0.0.1", 1883), PrivateMosquitto
    )


@pytest.fixture
def test_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def db_schema(
    request: pytest.FixtureRequest, database_url: str, test_id: str
) -> AsyncIterator[str]:
    """A fresh, migrated schema for this test, dropped afterwards."""
    schema = f"t_{test_id}"
    await migrate(database_url, schema)
    if _backend_of(request) == "timescaledb":
        # The TimescaleDB run must really take the production path (a check that can fail).
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = %s",
                (schema,),
            )
            assert (await cur.fetchone())[0] > 0, "no hypertables on the TimescaleDB backend"
    yield schema
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def topic_root(test_id: str) -> str:
    return f"t{test_id}/nattillsyn"


@pytest.fixture
def settings(database_url: str, db_schema: str, mqtt_url: str, topic_root: str) -> Settings:
    return Settings(
        database_url=database_url,
        database_schema=db_schema,
        mqtt_url=mqtt_url,
        topic_root=topic_root,
        site="site-1",
        clips_dir=CLIPS,
    )


@pytest.fixture
async def pool(settings: Settings):
    p = make_pool(settings.database_url, settings.database_schema)
    await p.open(wait=True)
    yield p
    await p.close()


@pytest.fixture(scope="session")
def clips_dir() -> Path:
    if not (CLIPS / "labels.csv").exists():
        pytest.skip(f"shared clips not found at {CLIPS}")
    return CLIPS


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (./dev test installs it as root)")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser_server(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Chromium for the whole session: Playwright's browser server (its own Node driver)
    around Debian's Chromium; yields the WebSocket endpoint tests connect to."""
    driver = Path(playwright.__file__).parent / "driver"
    config = tmp_path_factory.mktemp("chromium") / "launch.json"
    config.write_text(
        json.dumps({"executablePath": str(chromium), "args": CHROMIUM_ARGS, "headless": True})
    )
    proc = subprocess.Popen(
        [driver / "node", driver / "package" / "cli.js", "launch-server",
         "--browser", "chromium", "--config", config],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the server prints its endpoint once it is up
        endpoint = re.search(r"ws://\S+", line)
        assert endpoint, f"Playwright's browser server did not start: {line!r}"
        yield endpoint.group(0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def browser(browser_server: str):
    """The session's Chromium, connected for this test; everything the test opened in it
    (contexts, pages) closes with the connection at the end of the test."""
    async with async_playwright() as p:
        b = await p.chromium.connect(browser_server)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def context(browser):
    """The test's own browser context (cookies, storage, service workers)."""
    ctx = await browser.new_context()
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context):
    return await context.new_page()


@pytest.fixture
async def services(settings):
    """Ingest, alerting and the api on the test's schema and topic root (api on a free port)."""
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"port": 0, "cookie_secure": False})}
    )
    await seed(settings, ["rum-101", "rum-102"])
    # The demo's agreed tillsyn times (23, 02, 05) would make real rounds due for 30 min after
    # each (round_grace_s) and the outcome would depend on the hour the suite runs: tests that
    # want due rounds add their own times.
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        await conn.execute(
            sql.SQL("DELETE FROM {}.tillsyn_times").format(sql.Identifier(settings.database_schema))
        )
    started = []
    try:
        for svc in (IngestService(settings), AlertingService(settings), ApiService(settings)):
            await svc.start()
            started.append(svc)
        yield {s.name: s for s in started} | {"settings": settings}
    finally:
        for svc in reversed(started):
            await svc.stop()
