"""The api: app factory, resources in cleanup_ctx, and the service wrapper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nattillsyn import log
from nattillsyn.db.pool import make_pool
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Topics
from nattillsyn.settings import Settings

from . import (
    admin_audit,
    admin_devices,
    admin_residents,
    admin_structure,
    board,
    evaluation,
    oidc,
    openapi,
    rounds,
    session,
    shared_tablets,
    sso,
)
from .context import HUB, MQTT, POOL, PUSHER, SETTINGS, TOPICS, same_origin
from .live import LiveHub
from .mosquitto_sync import sync_mosquitto
from .problems import problem_middleware
from .pusher import ConfigPusher

logger = log.get(__name__)
STATIC = Path(__file__).parent / "static"
# Every route module of the api; the OpenAPI document is built from the same list.
ROUTES = [
    session.routes,
    sso.routes,
    board.routes,
    rounds.routes,
    shared_tablets.routes,
    openapi.meta,
    admin_structure.routes,
    admin_residents.routes,
    admin_devices.routes,
    admin_audit.routes,
    evaluation.routes,
]


@web.middleware
async def security_headers(request: web.Request, handler):
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    )
    return resp


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    suffix = f"{settings.site}-{settings.topic_root.replace('/', '-')}"
    pool = make_pool(settings.database_url, settings.database_schema, max_size=8)
    await pool.open(wait=True)
    app[POOL] = pool
    app[TOPICS] = Topics(settings.topic_root)
    mqtt = MqttClient(settings.mqtt_url, f"nattillsyn-api-{suffix}-{id(app):x}")
    await mqtt.start()
    app[MQTT] = mqtt
    hub = LiveHub(
        settings.mqtt_url,
        app[TOPICS],
        f"nattillsyn-api-live-{suffix}-{id(app):x}",
        database_url=settings.database_url,
        schema=settings.database_schema,
        pool=pool,
        stale_s=settings.alerting.liveness_stale_s,
    )
    await hub.start()
    app[HUB] = hub
    pusher = ConfigPusher(pool, mqtt, app[TOPICS], settings.api.push_interval_s)
    await pusher.start()
    app[PUSHER] = pusher
    await sync_mosquitto(app)
    try:
        yield
    finally:
        await pusher.stop()
        await hub.stop()  # closes every WebSocket
        await mqtt.stop()
        await pool.close()
        await oidc.close_client(app)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def admin_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "admin.html")


async def service_worker(request: web.Request) -> web.FileResponse:
    """Served from the root so its scope is the whole app (PWA: install, push)."""
    resp = web.FileResponse(STATIC / "sw.js")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["Service-Worker-Allowed"] = "/"
    return resp


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def prometheus(request: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[security_headers, problem_middleware, same_origin])
    app[SETTINGS] = settings
    app[oidc.CLIENT] = oidc.OidcClient(settings.oidc)
    app.cleanup_ctx.append(_resources)
    for routes in ROUTES:
        app.add_routes(routes.table)
    app[openapi.DOCUMENT] = openapi.document(ROUTES)
    app.add_routes(sso.pages)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/", index)
    app.router.add_get("/admin", admin_page)
    app.router.add_get("/sw.js", service_worker)
    app.router.add_static("/static/", STATIC)
    return app


class ApiService:
    name = "api"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._runner: web.AppRunner | None = None
        self.port = settings.api.port

    @property
    def url(self) -> str:
        return f"http://{self.settings.api.host}:{self.port}/"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.api.host, self.settings.api.port)
        await site.start()
        if self._runner.addresses:  # port 0: the one the OS chose
            self.port = self._runner.addresses[0][1]
        logger.info("api listening", url=self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
