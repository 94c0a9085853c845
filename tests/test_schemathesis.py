"""Schemathesis against the OpenAPI document the api serves: no server errors, and every
response conforms to the document (status, content type, body schema).

The api runs in a thread with its own event loop on a migrated schema seeded with the
demo organisation; calls are made as the system administrator (who reaches every
route) with a session created directly in the database, so login throttling and
logout do not get in the way. The WebSocket route is left out: OpenAPI cannot
describe an upgrade, and its HTTP refusals are covered by the access matrix.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from psycopg import sql
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from nattillsyn.api.app import ROUTES, ApiService
from nattillsyn.api.openapi import document
from nattillsyn.app.demo import seed, seed_admin
from nattillsyn.db.migrate import migrate
from nattillsyn.settings import Settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SKIP = {("GET", "/api/v1/ws")}
ARGON2 = {"POST /api/v1/login", "POST /api/v1/users", "PATCH /api/v1/users/{user_id}"}


@dataclass
class Served:
    url: str
    database_url: str
    schema: str

    def session(self) -> tuple[dict, dict]:
        """A fresh sysadmin session: (cookies, headers)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            conn.execute(
                """INSERT INTO user_sessions (token_hash, user_id, expires_at, csrf_hash)
                   SELECT %s, id, now() + interval '1 hour', %s FROM users
                   WHERE username = 'admin'""",
                (
                    hashlib.sha256(token.encode()).hexdigest(),
                    hashlib.sha256(csrf.encode()).hexdigest(),
                ),
            )
        return {"nattillsyn_session": token, "nattillsyn_csrf": csrf}, {"X-CSRF-Token": csrf}


@pytest.fixture(scope="module")
def served(database_url: str, mqtt_url: str) -> Iterator[Served]:
    schema = f"t_st_{uuid.uuid4().hex[:10]}"
    s = Settings(
        database_url=database_url,
        database_schema=schema,
        mqtt_url=mqtt_url,
        topic_root=f"t{uuid.uuid4().hex[:10]}/nattillsyn",
        site="site-1",
    )
    s = s.model_copy(
        update={
            "api": s.api.model_copy(
                update={"port": 0, "cookie_secure": False, "login_max_failures_client": 100000}
            )
        }
    )
    loop = asyncio.new_event_loop()
    ready, stop = threading.Event(), None
    box: dict = {}

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        await migrate(database_url, schema)
        await seed(s, ["rum-101", "rum-102"])
        await seed_admin(s)
        api = ApiService(s)
        await api.start()
        box["url"] = api.url
        ready.set()
        await stop.wait()
        await api.stop()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # surfaced to the fixture below
            box["error"] = exc
            ready.set()

    t = threading.Thread(target=run, name="schemathesis-api", daemon=True)
    t.start()
    assert ready.wait(60), "api did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield Served(box["url"], database_url, schema)
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(30)
        loop.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="module")
def api_schema(served: Served):
    return schemathesis.openapi.from_url(f"{served.url}api/v1/openapi.json")


@pytest.fixture(scope="module")
def admin(served: Served) -> tuple[dict, dict]:
    return served.session()


def _labels() -> list[str]:
    doc = document(ROUTES)
    return sorted(f"{m.upper()} {p}" for p, ms in doc["paths"].items() for m in ms)


@pytest.mark.parametrize("label", _labels())
def test_api_conforms_to_its_openapi_document(label, api_schema, served: Served, admin) -> None:
    method, path = label.split(" ", 1)
    if (method, path) in SKIP:
        pytest.skip("WebSocket upgrade: not describable in OpenAPI")
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served document"

    examples = int(os.environ.get("NATTILLSYN_SCHEMATHESIS_EXAMPLES", "25"))
    if label in ARGON2 and "NATTILLSYN_SCHEMATHESIS_EXAMPLES" not in os.environ:
        examples = 8  # each example hashes a password (argon2 is slow by design)

    @given(case=operation.as_strategy())
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=os.environ.get("NATTILLSYN_SCHEMATHESIS_RANDOM") is None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case) -> None:
        cookies, headers = admin
        if path == "/api/v1/logout":
            cookies, headers = served.session()  # a session of its own to end
        response = case.call(cookies=cookies, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    check()
