"""Shared by the administration tests: a signed-in HTTP client and a running api."""

from __future__ import annotations

from contextlib import asynccontextmanager

import aiohttp

from nattillsyn.api.app import ApiService
from nattillsyn.app.demo import ADMIN_DEMO_USERS, DEMO_USERS, OTHER_UNIT_USERS, seed, seed_admin
from nattillsyn.testing.poll import poll as poll_until

PASSWORDS = {u: p for u, p, _, _ in DEMO_USERS + ADMIN_DEMO_USERS + OTHER_UNIT_USERS}
ROLE_USER = {"night_staff": "natt", "unit_manager": "chef", "sysadmin": "admin", "evaluator": "utv"}


class Client:
    """aiohttp session signed in as one user; sends the CSRF token like the admin page."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None

    async def login(self, username: str, password: str | None = None) -> aiohttp.ClientResponse:
        r = await self.http.post(
            f"{self.base}/api/v1/login",
            json={"username": username, "password": password or PASSWORDS[username]},
        )
        for c in self.http.cookie_jar:
            if c.key == "nattillsyn_csrf":
                self.csrf = c.value
        return r

    async def call(self, method: str, path: str, json=None, headers=None, **kw):
        h = {"X-CSRF-Token": self.csrf} if self.csrf else {}
        h.update(headers or {})
        if json is not None or method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
            h.setdefault("Content-Type", "application/json")
            kw["json"] = {} if json is None else json
        return await self.http.request(method, f"{self.base}{path}", headers=h, **kw)

    async def ok(self, method: str, path: str, json=None, status: int | None = None, **kw):
        r = await self.call(method, path, json, **kw)
        body = await r.json() if r.content_type.endswith("json") else await r.text()
        if status is not None:
            assert r.status == status, (r.status, body)
        else:
            assert r.status < 300, (r.status, body)
        return body

    async def close(self) -> None:
        await self.http.close()


@asynccontextmanager
async def running_api(settings, rooms=("rum-101", "rum-102")):
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"port": 0, "cookie_secure": False})}
    )
    await seed(settings, list(rooms))
    await seed_admin(settings)
    api = ApiService(settings)
    await api.start()
    try:
        yield api, settings
    finally:
        await api.stop()


@asynccontextmanager
async def signed_in(api, username: str, password: str | None = None):
    c = Client(api.url)
    try:
        r = await c.login(username, password)
        assert r.status == 200, await r.text()
        yield c
    finally:
        await c.close()


async def rows_of(pool, sql: str, args: tuple = ()) -> list[tuple]:
    """The rows of one query, on a connection of its own."""
    async with pool.connection() as conn:
        return await (await conn.execute(sql, args)).fetchall()


async def poll(predicate, timeout: float = 5.0):
    """Await `predicate()` until truthy; returns its value or fails after `timeout`."""
    return await poll_until(predicate, timeout, every=0.02)
