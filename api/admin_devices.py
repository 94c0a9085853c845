"""Devices: provisioning with a claim code, MQTT credentials and ACL, health, replacement.

A manager provisions a device for a room and gets a one-time claim code. The Pi
claims with it (`nattillsyn claim CODE`) and receives its broker address, topic
and a fresh MQTT password, of which only the Mosquitto hash is kept; the broker's
password and ACL files are rewritten and reloaded. Replacing a device retires the
old one (its account revoked, a last `monitoring=false` config left for it) and
provisions the new one in the same room: the room's history stays whole because
telemetry is kept per room, and `device_assignments` records which device watched
the room when.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from nattillsyn import log
from nattillsyn.protocol import Topics

from . import mosquitto
from .admin_common import (
    MANAGERS,
    AdminRoutes,
    audit_change,
    check_unit,
    kick,
    purpose,
    visible_sites,
)
from .context import (
    MQTT,
    POOL,
    PUSHER,
    SETTINGS,
    TOPICS,
    USER,
    audit,
    json_response,
    read_body,
    record_change,
)
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
from .problems import ProblemError
from .session import client_address

logger = log.get(__name__)
routes = AdminRoutes("devices")
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed on a Pi


def new_claim_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def claim_hash(code: str) -> str:
    norm = code.upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(norm.encode()).hexdigest()


def health(row: dict, now: datetime) -> str:
    """ok / stale / offline / never_seen / config_pending / retired."""
    if row["status"] == "retired":
        return "retired"
    if row["last_seen"] is None:
        return "never_seen"
    if row["availability"] == "offline":
        return "offline"
    beat_s = float((row["settings"] or {}).get("heartbeat_s") or 15.0)
    if row["last_heartbeat"] is None or now - row["last_heartbeat"] > timedelta(
        seconds=3 * beat_s + 5
    ):
        return "stale"
    pushed = row["config_pushed_at"]
    if (
        row["desired_version"] > row["config_version"]
        and pushed is not None
        and now - pushed > timedelta(seconds=10)
    ):
        return "config_pending"
    return "ok"


DEVICE_SQL = """
    SELECT d.site_id, d.id, d.name, d.room_id, d.status, d.provisioned_by IS NOT NULL AS managed,
           d.availability, d.last_heartbeat, d.last_seen, d.agent_version, d.config_version,
           d.desired_version, d.desired_monitoring, d.claimed_at, d.claim_expires_at, d.replaces,
           d.settings, d.config_pushed_at, hb.payload AS heartbeat
    FROM devices d
    LEFT JOIN LATERAL (
        SELECT payload FROM heartbeats h WHERE h.site = d.site_id AND h.device = d.id
        ORDER BY ts DESC LIMIT 1) hb ON true"""


def _view(r: dict, now: datetime) -> DeviceView:
    hb = r["heartbeat"] or {}
    return DeviceView(
        site=r["site_id"],
        id=r["id"],
        name=r["name"],
        room=r["room_id"],
        status=r["status"],
        managed=r["managed"],
        availability=r["availability"],
        health=health(r, now),  # type: ignore[arg-type]
        last_heartbeat=r["last_heartbeat"],
        last_seen=r["last_seen"],
        agent_version=r["agent_version"],
        fps=hb.get("fps"),
        monitoring=hb.get("monitoring"),
        applied_version=r["config_version"],
        desired_version=r["desired_version"],
        desired_monitoring=r["desired_monitoring"],
        claimed_at=r["claimed_at"],
        claim_expires_at=r["claim_expires_at"] if r["status"] == "provisioned" else None,
        replaces=r["replaces"],
        settings=r["settings"] or {},
    )


async def device_views(conn: AsyncConnection, where: str, args: tuple) -> list[DeviceView]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{DEVICE_SQL} WHERE {where} ORDER BY d.site_id, d.room_id, d.id", args)
        rows = await cur.fetchall()
    now = datetime.now(UTC)
    return [_view(r, now) for r in rows]


async def _one(conn: AsyncConnection, site: str, device: str) -> DeviceView:
    views = await device_views(conn, "d.site_id = %s AND d.id = %s", (site, device))
    if not views:
        raise ProblemError(404, "Not Found", "no such device")
    return views[0]


async def sync_mosquitto(app: web.Application) -> bool:
    """Rewrite the broker's password and ACL files from the database and reload it."""
    api = app[SETTINGS].api
    if not api.mosquitto_dir:
        return False
    async with app[POOL].connection() as conn:
        accounts = await mosquitto.load_accounts(conn)
    topics = Topics(app[SETTINGS].topic_root)
    await asyncio.to_thread(mosquitto.write_files, Path(api.mosquitto_dir), accounts, topics)
    reloaded = mosquitto.reload_broker(api.mosquitto_pid_file)
    if api.mosquitto_reload_command:
        reloaded = await _run_reload(api.mosquitto_reload_command)
    logger.info("mosquitto files written", accounts=len(accounts), reloaded=reloaded)
    return True


async def _run_reload(argv: list[str]) -> bool:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    except (OSError, TimeoutError) as exc:
        logger.warning("mosquitto reload command failed", error=str(exc))
        return False
    if proc.returncode != 0:
        logger.warning("mosquitto reload command failed", code=proc.returncode, stderr=err[-500:])
    return proc.returncode == 0


async def _issue_code(conn: AsyncConnection, request: web.Request, site: str, device: str):
    code = new_claim_code()
    expires = datetime.now(UTC) + timedelta(hours=request.app[SETTINGS].api.claim_code_hours)
    await conn.execute(
        "UPDATE devices SET claim_hash = %s, claim_expires_at = %s WHERE site_id = %s AND id = %s",
        (claim_hash(code), expires, site, device),
    )
    return code, expires


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
    row = await (
        await conn.execute("SELECT active FROM rooms WHERE site_id = %s AND id = %s", (site, room))
    ).fetchone()
    if row is None or not row[0]:
        raise ProblemError(422, "Invalid request body", f"no active room {room!r} in the unit")
    other = await (
        await conn.execute(
            """SELECT id FROM devices WHERE site_id = %s AND room_id = %s AND id <> %s
               AND status <> 'retired' AND provisioned_by IS NOT NULL""",
            (site, room, device),
        )
    ).fetchone()
    if other is not None:
        raise ProblemError(
            409, "Conflict", f"room {room} already has device {other[0]}: replace it instead"
        )
    existing = await (
        await conn.execute(
            "SELECT provisioned_by, status FROM devices WHERE site_id = %s AND id = %s",
            (site, device),
        )
    ).fetchone()
    if existing is not None and (existing[0] is not None or existing[1] == "retired"):
        raise ProblemError(409, "Conflict", f"device {device} is already provisioned")
    by = request[USER].username
    if existing is None:
        await conn.execute(
            """INSERT INTO devices (site_id, id, room_id, name, status, provisioned_by, settings,
                                    replaces)
               VALUES (%s, %s, %s, %s, 'provisioned', %s, %s, %s)""",
            (site, device, room, name, by, Jsonb(settings), replaces),
        )
    else:  # a device seen only from its messages is adopted
        await conn.execute(
            """UPDATE devices SET room_id = %s, name = %s, status = 'provisioned',
                   provisioned_by = %s, settings = %s, replaces = %s
               WHERE site_id = %s AND id = %s""",
            (room, name, by, Jsonb(settings), replaces, site, device),
        )
    await conn.execute(
        "INSERT INTO device_assignments (site_id, device_id, room_id) VALUES (%s, %s, %s)",
        (site, device, room),
    )


async def _site_device(request: web.Request) -> tuple[str, str]:
    site = await check_unit(request, request.match_info["site"])
    return site, request.match_info["device"]


@routes.get(
    "/api/v1/devices", roles=MANAGERS, response=DeviceList, query=("site",), problems=(404,)
)
async def list_devices(request: web.Request) -> web.Response:
    """Devices of the user's units with heartbeat, agent version, config and health."""
    sites = visible_sites(request)
    async with request.app[POOL].connection() as conn:
        if sites is None:
            views = await device_views(conn, "true", ())
        else:
            views = await device_views(conn, "d.site_id = ANY(%s)", (sites,))
    await audit(
        request,
        "read",
        "devices",
        purpose=purpose(request, "administration"),
        site=sites[0] if sites and len(sites) == 1 else None,
        detail={"devices": len(views)},
    )
    return json_response(DeviceList(devices=views))


@routes.post(
    "/api/v1/units/{site}/devices",
    roles=MANAGERS,
    request=DeviceProvision,
    response=DeviceProvisioned,
    status=201,
    problems=(409,),
)
async def provision(request: web.Request) -> web.Response:
    """Provision a device for a room: returns a one-time claim code for the Pi."""
    site = await check_unit(request, request.match_info["site"])
    body = await read_body(request, DeviceProvision)
    settings = body.settings.model_dump(mode="json", exclude_none=True)
    async with request.app[POOL].connection() as conn, conn.transaction():
        await _provision(conn, request, site, body.id, body.room, body.name, settings)
        code, expires = await _issue_code(conn, request, site, body.id)
        view = await _one(conn, site, body.id)
        await record_change(
            conn, request, "device", f"{site}/{body.id}", "provision", None,
            view.model_dump(mode="json"), site=site,
        )  # fmt: skip
        await audit_change(request, "device provisioned", site=site, room=body.room,
            detail={"device": body.id}, conn=conn,
        )  # fmt: skip
    kick(request, (site, body.id))
    return json_response(
        DeviceProvisioned(device=view, claim_code=code, claim_expires_at=expires), status=201
    )


@routes.get("/api/v1/units/{site}/devices/{device}", roles=MANAGERS, response=DeviceView)
async def get_device(request: web.Request) -> web.Response:
    """One device with its health."""
    site, device = await _site_device(request)
    async with request.app[POOL].connection() as conn:
        view = await _one(conn, site, device)
    await audit(
        request, "read", "device", purpose=purpose(request, "administration"), site=site,
        room=view.room, detail={"device": device},
    )  # fmt: skip
    return json_response(view)


@routes.patch(
    "/api/v1/units/{site}/devices/{device}",
    roles=MANAGERS,
    request=DeviceUpdate,
    response=DeviceView,
    problems=(409,),
)
async def update_device(request: web.Request) -> web.Response:
    """Rename a device or change its analysis settings (pushed as a new config version)."""
    site, device = await _site_device(request)
    body = await read_body(request, DeviceUpdate)
    async with request.app[POOL].connection() as conn, conn.transaction():
        before = await _one(conn, site, device)
        if before.status == "retired":
            raise ProblemError(409, "Conflict", "device is retired")
        if body.name is not None:
            await conn.execute(
                "UPDATE devices SET name = %s WHERE site_id = %s AND id = %s",
                (body.name, site, device),
            )
        if body.settings is not None:
            await conn.execute(
                "UPDATE devices SET settings = %s WHERE site_id = %s AND id = %s",
                (Jsonb(body.settings.model_dump(mode="json", exclude_none=True)), site, device),
            )
        after = await _one(conn, site, device)
        await record_change(
            conn, request, "device", f"{site}/{device}", "update",
            before.model_dump(mode="json"), after.model_dump(mode="json"), site=site,
        )  # fmt: skip
        await audit_change(request, "device updated", site=site, room=after.room,
            detail={"device": device}, conn=conn,
        )  # fmt: skip
    if body.settings is not None:
        kick(request, (site, device))
    return json_response(after)


@routes.post(
    "/api/v1/units/{site}/devices/{device}/claim-code",
    roles=MANAGERS,
    response=DeviceProvisioned,
    problems=(409,),
)
async def reissue_code(request: web.Request) -> web.Response:
    """A new claim code (e.g. the Pi was reinstalled); the device claims again."""
    site, device = await _site_device(request)
    async with request.app[POOL].connection() as conn, conn.transaction():
        view = await _one(conn, site, device)
        if view.status == "retired" or not view.managed:
            raise ProblemError(409, "Conflict", "only a provisioned, not retired device")
        code, expires = await _issue_code(conn, request, site, device)
        await audit_change(request, "device claim code issued", site=site, room=view.room,
            detail={"device": device}, conn=conn,
        )  # fmt: skip
    return json_response(DeviceProvisioned(device=view, claim_code=code, claim_expires_at=expires))


async def _retire(conn: AsyncConnection, request: web.Request, site: str, device: str) -> None:
    await conn.execute(
        """UPDATE devices SET status = 'retired', retired_at = now(), claim_hash = NULL,
               desired_version = greatest(desired_version, config_version) + 1,
               desired_monitoring = false, config_pushed_at = now()
           WHERE site_id = %s AND id = %s""",
        (site, device),
    )
    await conn.execute(
        "UPDATE device_assignments SET to_at = now() WHERE site_id = %s AND device_id = %s "
        "AND to_at IS NULL",
        (site, device),
    )
    await conn.execute(
        "UPDATE mqtt_accounts SET revoked_at = now() WHERE site_id = %s AND device_id = %s "
        "AND revoked_at IS NULL",
        (site, device),
    )


async def _last_config(request: web.Request, view: DeviceView) -> None:
    """Leave a retained `monitoring=false` for a retired device, should it come back."""
    from nattillsyn.protocol import TopicKind, encode

    from .pusher import device_config

    if view.room is None:
        return
    async with request.app[POOL].connection() as conn:
        row = await (
            await conn.execute(
                "SELECT desired_version FROM devices WHERE site_id = %s AND id = %s",
                (view.site, view.id),
            )
        ).fetchone()
    topic = request.app[TOPICS].device(view.site, view.room, view.id, TopicKind.config_set)
    cfg = device_config(row[0], False, view.settings)
    await request.app[MQTT].publish(topic, encode(cfg), qos=1, retain=True)


@routes.post(
    "/api/v1/units/{site}/devices/{device}/retire",
    roles=MANAGERS,
    response=DeviceView,
    problems=(409,),
)
async def retire(request: web.Request) -> web.Response:
    """Take a device out of service: credentials revoked, monitoring off."""
    site, device = await _site_device(request)
    async with request.app[POOL].connection() as conn, conn.transaction():
        before = await _one(conn, site, device)
        if before.status == "retired":
            raise ProblemError(409, "Conflict", "device is already retired")
        await _retire(conn, request, site, device)
        after = await _one(conn, site, device)
        await record_change(
            conn, request, "device", f"{site}/{device}", "retire",
            before.model_dump(mode="json"), after.model_dump(mode="json"), site=site,
        )  # fmt: skip
        await audit_change(request, "device retired", site=site, room=before.room,
            detail={"device": device}, conn=conn,
        )  # fmt: skip
    await _last_config(request, after)
    await sync_mosquitto(request.app)
    return json_response(after)


@routes.post(
    "/api/v1/units/{site}/devices/{device}/replace",
    roles=MANAGERS,
    request=DeviceReplace,
    response=DeviceProvisioned,
    status=201,
    problems=(409,),
)
async def replace(request: web.Request) -> web.Response:
    """Replace a device by a new one in the same room; the room keeps its history."""
    site, device = await _site_device(request)
    body = await read_body(request, DeviceReplace)
    try:
        async with request.app[POOL].connection() as conn, conn.transaction():
            old = await _one(conn, site, device)
            if old.status == "retired" or old.room is None:
                raise ProblemError(409, "Conflict", "only a device in service can be replaced")
            await _retire(conn, request, site, device)
            await _provision(
                conn, request, site, body.new_id, old.room, body.name or old.name,
                old.settings, replaces=device,
            )  # fmt: skip
            code, expires = await _issue_code(conn, request, site, body.new_id)
            new = await _one(conn, site, body.new_id)
            await record_change(
                conn, request, "device", f"{site}/{device}", "replace",
                old.model_dump(mode="json"), new.model_dump(mode="json"), site=site,
            )  # fmt: skip
            await audit_change(request, "device replaced", site=site, room=old.room,
                detail={"device": device, "new_device": body.new_id}, conn=conn,
            )  # fmt: skip
    except psycopg.errors.UniqueViolation:
        raise ProblemError(409, "Conflict", "device id already in use") from None
    await _last_config(request, old.model_copy(update={"status": "retired"}))
    await sync_mosquitto(request.app)
    kick(request, (site, body.new_id))
    return json_response(
        DeviceProvisioned(device=new, claim_code=code, claim_expires_at=expires), status=201
    )


@routes.post(
    "/api/v1/units/{site}/devices/{device}/push",
    roles=MANAGERS,
    response=DeviceView,
    problems=(409,),
)
async def push(request: web.Request) -> web.Response:
    """Push the device's config again, as a new version."""
    site, device = await _site_device(request)
    async with request.app[POOL].connection() as conn:
        view = await _one(conn, site, device)
    if view.status == "retired" or not view.managed:
        raise ProblemError(409, "Conflict", "only a provisioned, not retired device")
    pusher = request.app.get(PUSHER)
    if pusher is not None:
        await pusher.push_now(site, device)
    async with request.app[POOL].connection() as conn:
        view = await _one(conn, site, device)
        await audit_change(request, "device config pushed", site=site, room=view.room,
            detail={"device": device, "version": view.desired_version}, conn=conn,
        )  # fmt: skip
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
    from .auth import record_failure, throttle_wait

    body = await read_body(request, ClaimRequest)
    api = request.app[SETTINGS].api
    client = client_address(request)
    async with request.app[POOL].connection() as conn:
        wait = await throttle_wait(
            conn, "claim:", client, window_s=api.login_window_s, per_user=10**6,
            per_client=api.login_max_failures_client,
        )  # fmt: skip
        if wait > 0:
            err = ProblemError(429, "Too Many Requests", "too many wrong claim codes")
            err.response.headers["Retry-After"] = str(int(wait) + 1)
            raise err
        async with conn.transaction():
            row = await (
                await conn.execute(
                    """SELECT site_id, id, room_id FROM devices
                       WHERE claim_hash = %s AND claim_expires_at > now() AND status <> 'retired'
                       FOR UPDATE""",
                    (claim_hash(body.code),),
                )
            ).fetchone()
            if row is None:
                await record_failure(conn, "claim:", client)
                raise ProblemError(404, "Not Found", "unknown or expired claim code")
            site, device, room = row
            password = mosquitto.new_password()
            username = mosquitto.device_username(site, device)
            await conn.execute(
                """INSERT INTO mqtt_accounts (username, kind, site_id, device_id, password_hash)
                   VALUES (%s, 'device', %s, %s, %s)
                   ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                       site_id = EXCLUDED.site_id, device_id = EXCLUDED.device_id,
                       revoked_at = NULL, created_at = now()""",
                (username, site, device, mosquitto.hash_password(password)),
            )
            await conn.execute(
                """UPDATE devices SET claim_hash = NULL, claim_expires_at = NULL,
                       claimed_at = now(), status = 'active'
                   WHERE site_id = %s AND id = %s""",
                (site, device),
            )
            await conn.execute(
                """INSERT INTO audit_log (username, role, action, purpose, what, site, room, detail)
                   VALUES (%s, 'device', 'change', 'provisioning', 'device claimed', %s, %s, %s)""",
                (username, site, room, Jsonb({"device": device, "client": client})),
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
