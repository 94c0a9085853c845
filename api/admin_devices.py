"""Devices: provisioning with a claim code, MQTT credentials and ACL, health, replacement.

A manager provisions a device for a room and gets a one-time claim code. The Pi
claims with it (`nattillsyn claim CODE`) and receives its broker address, topic
and a fresh MQTT password, of which only the Mosquitto hash is kept; the broker's
password and ACL files are rewritten and reloaded. Replacing a device retires the
old one (its account revoked, a last `monitoring=false` config left for it) and
provisions the new one in the same room: the room's history stays whole because
telemetry is kept per room, and `device_assignments` records which device watched
the room when. Queries: `queries.devices`.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from psycopg import AsyncConnection

from nattillsyn.protocol import TopicKind, encode

from . import mosquitto
from .admin_common import (
    AdminRoutes,
    UnitHandler,
    audit_change,
    audit_read,
    changing,
    connection,
    kick,
    record,
    require_room_in_use,
    scoped_read,
)
from .auth import record_failure, throttle_wait
from .context import MQTT, PUSHER, SETTINGS, TOPICS, USER, Handler, json_response, read_body
from .models import (
    ClaimRequest,
    ClaimResponse,
    DeviceList,
    DeviceProvision,
    DeviceProvisioned,
    DeviceReplace,
    DeviceUpdate,
    DeviceView,
)
from .mosquitto_sync import sync_mosquitto
from .problems import ProblemError
from .pusher import device_config
from .queries import devices as db
from .session import client_address

routes = AdminRoutes("devices")


async def _one(conn: AsyncConnection, site: str, device: str) -> DeviceView:
    view = await db.view(conn, site, device)
    if view is None:
        raise ProblemError(404, "Not Found", "no such device")
    return view


def _managed(view: DeviceView) -> DeviceView:
    """A provisioned device still in service, else 409."""
    if view.status == "retired" or not view.managed:
        raise ProblemError(409, "Conflict", "only a provisioned, not retired device")
    return view


async def _issue_code(conn: AsyncConnection, request: web.Request, site: str, device: str):
    return await db.issue_claim_code(conn, site, device, request.app[SETTINGS].api.claim_code_hours)


async def _provision(
    conn: AsyncConnection,
    request: web.Request,
    site: str,
    device: str,
    room: str,
    name: str | None,
    settings: dict,
    replaces: str | None = None,
) -> None:
    await require_room_in_use(conn, site, room)
    other = await db.other_managed_device(conn, site, room, device)
    if other is not None:
        raise ProblemError(
            409, "Conflict", f"room {room} already has device {other}: replace it instead"
        )
    existing = await db.known_device(conn, site, device)
    if existing is not None and (existing[0] is not None or existing[1] == "retired"):
        raise ProblemError(409, "Conflict", f"device {device} is already provisioned")
    await db.provision(
        conn,
        site,
        device,
        room,
        name,
        settings,
        request[USER].username,
        adopt=existing is not None,
        replaces=replaces,
    )


async def _record(
    conn: AsyncConnection,
    request: web.Request,
    change: str,
    what: str,
    before: DeviceView | None,
    after: DeviceView,
    **detail,
) -> None:
    """The version of the device changed (`before`, else `after`) and its access-log row."""
    d = before or after
    await record(
        conn,
        request,
        what,
        ("device", f"{d.site}/{d.id}", change),
        before,
        after,
        site=d.site,
        room=d.room,
        detail={"device": d.id, **detail},
    )


@routes.get("/api/v1/devices", response=DeviceList, query=("site",), problems=(404,))
async def list_devices(request: web.Request) -> web.Response:
    """Devices of the user's units with heartbeat, agent version, config and health."""
    views = await scoped_read(request, "devices", db.views, lambda v: {"devices": len(v)})
    return json_response(DeviceList(devices=views))


def _provisions(tail: str, body: type) -> Callable[[UnitHandler], Handler]:
    """A route that provisions a device: 201 with the device and its one-time claim code."""
    return routes.unit(
        "post", tail, request=body, response=DeviceProvisioned, status=201, problems=(409,)
    )


def _provisioned(request: web.Request, view: DeviceView, code: str, expires) -> web.Response:
    kick(request, (view.site, view.id))  # its first config now
    answer = DeviceProvisioned(device=view, claim_code=code, claim_expires_at=expires)
    return json_response(answer, status=201)


@_provisions("/devices", DeviceProvision)
async def provision(request: web.Request, site: str) -> web.Response:
    """Provision a device for a room: returns a one-time claim code for the Pi."""
    body = await read_body(request, DeviceProvision)
    settings = body.settings.model_dump(mode="json", exclude_none=True)
    async with changing(request) as conn:
        await _provision(conn, request, site, body.id, body.room, body.name, settings)
        code, expires = await _issue_code(conn, request, site, body.id)
        view = await _one(conn, site, body.id)
        await _record(conn, request, "provision", "device provisioned", None, view)
    return _provisioned(request, view, code, expires)


@routes.unit("get", "/devices/{device}", response=DeviceView)
async def get_device(request: web.Request, site: str) -> web.Response:
    """One device with its health."""
    device = request.match_info["device"]
    async with connection(request) as conn:
        view = await _one(conn, site, device)
    await audit_read(request, "device", site=site, room=view.room, detail={"device": device})
    return json_response(view)


@routes.unit(
    "patch", "/devices/{device}", request=DeviceUpdate, response=DeviceView, problems=(409,)
)
async def update_device(request: web.Request, site: str) -> web.Response:
    """Rename a device or change its analysis settings (pushed as a new config version)."""
    device = request.match_info["device"]
    body = await read_body(request, DeviceUpdate)
    async with changing(request) as conn:
        before = await _one(conn, site, device)
        if before.status == "retired":
            raise ProblemError(409, "Conflict", "device is retired")
        await db.update_device(conn, site, device, body.model_dump(mode="json", exclude_none=True))
        after = await _one(conn, site, device)
        await _record(conn, request, "update", "device updated", before, after)
    if body.settings is not None:
        kick(request, (site, device))
    return json_response(after)


@routes.unit("post", "/devices/{device}/claim-code", response=DeviceProvisioned, problems=(409,))
async def reissue_code(request: web.Request, site: str) -> web.Response:
    """A new claim code (e.g. the Pi was reinstalled); the device claims again."""
    device = request.match_info["device"]
    async with changing(request) as conn:
        view = _managed(await _one(conn, site, device))
        code, expires = await _issue_code(conn, request, site, device)
        await audit_change(
            request,
            "device claim code issued",
            site=site,
            room=view.room,
            detail={"device": device},
            conn=conn,
        )
    return json_response(DeviceProvisioned(device=view, claim_code=code, claim_expires_at=expires))


async def _last_config(request: web.Request, view: DeviceView) -> None:
    """Leave a retained `monitoring=false` for a retired device, should it come back."""
    if view.room is None:
        return
    async with connection(request) as conn:
        version = await db.desired_version(conn, view.site, view.id)
    topic = request.app[TOPICS].device(view.site, view.room, view.id, TopicKind.config_set)
    cfg = device_config(version, False, view.settings)
    await request.app[MQTT].publish(topic, encode(cfg), qos=1, retain=True)


@routes.unit("post", "/devices/{device}/retire", response=DeviceView, problems=(409,))
async def retire(request: web.Request, site: str) -> web.Response:
    """Take a device out of service: credentials revoked, monitoring off."""
    device = request.match_info["device"]
    async with changing(request) as conn:
        before = await _one(conn, site, device)
        if before.status == "retired":
            raise ProblemError(409, "Conflict", "device is already retired")
        await db.retire(conn, site, device)
        after = await _one(conn, site, device)
        await _record(conn, request, "retire", "device retired", before, after)
    await _last_config(request, after)
    await sync_mosquitto(request.app)
    return json_response(after)


@_provisions("/devices/{device}/replace", DeviceReplace)
async def replace(request: web.Request, site: str) -> web.Response:
    """Replace a device by a new one in the same room; the room keeps its history."""
    device = request.match_info["device"]
    body = await read_body(request, DeviceReplace)
    async with changing(request, "device id already in use") as conn:
        old = await _one(conn, site, device)
        if old.status == "retired" or old.room is None:
            raise ProblemError(409, "Conflict", "only a device in service can be replaced")
        await db.retire(conn, site, device)
        name = body.name or old.name
        await _provision(conn, request, site, body.new_id, old.room, name, old.settings, device)
        code, expires = await _issue_code(conn, request, site, body.new_id)
        new = await _one(conn, site, body.new_id)
        await _record(conn, request, "replace", "device replaced", old, new, new_device=body.new_id)
    await _last_config(request, old.model_copy(update={"status": "retired"}))
    await sync_mosquitto(request.app)
    return _provisioned(request, new, code, expires)


@routes.unit("post", "/devices/{device}/push", response=DeviceView, problems=(409,))
async def push(request: web.Request, site: str) -> web.Response:
    """Push the device's config again, as a new version."""
    device = request.match_info["device"]
    async with connection(request) as conn:
        _managed(await _one(conn, site, device))
    pusher = request.app.get(PUSHER)
    if pusher is not None:
        await pusher.push_now(site, device)
    async with connection(request) as conn:
        view = await _one(conn, site, device)
        await audit_change(
            request,
            "device config pushed",
            site=site,
            room=view.room,
            detail={"device": device, "version": view.desired_version},
            conn=conn,
        )
    return json_response(view)


def _device_mqtt_url(request: web.Request) -> str:
    s = request.app[SETTINGS]
    url = s.api.device_mqtt_url or s.mqtt_url or "mqtt://127.0.0.1:1883"
    p = urlsplit(url)
    host = p.hostname or "127.0.0.1"
    netloc = f"{host}:{p.port}" if p.port else host
    return urlunsplit((p.scheme, netloc, p.path, p.query, ""))  # never a service's password


@routes.post(
    "/api/v1/devices/claim",
    roles=None,
    request=ClaimRequest,
    response=ClaimResponse,
    problems=(403, 404, 429),
)
async def claim(request: web.Request) -> web.Response:
    """The device claims itself with its code: gets its topic and MQTT credentials (once)."""
    body = await read_body(request, ClaimRequest)
    api = request.app[SETTINGS].api
    client = client_address(request)
    async with connection(request) as conn:
        wait = await throttle_wait(
            conn,
            "claim:",
            client,
            window_s=api.login_window_s,
            per_user=10**6,
            per_client=api.login_max_failures_client,
        )
        if wait > 0:
            err = ProblemError(429, "Too Many Requests", "too many wrong claim codes")
            err.response.headers["Retry-After"] = str(int(wait) + 1)
            raise err
        async with conn.transaction():
            found = await db.claimable(conn, body.code)
            if found is None:
                await record_failure(conn, "claim:", client)
                raise ProblemError(404, "Not Found", "unknown or expired claim code")
            site, device, room = found
            password = mosquitto.new_password()
            username = mosquitto.device_username(site, device)
            await db.claimed(
                conn, site, device, room, username, mosquitto.hash_password(password), client
            )
    await sync_mosquitto(request.app)
    return json_response(
        ClaimResponse(
            site=site,
            room=room,
            device=device,
            topic_root=request.app[SETTINGS].topic_root,
            mqtt_url=_device_mqtt_url(request),
            mqtt_username=username,
            mqtt_password=password,
        )
    )
