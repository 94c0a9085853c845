"""The night-staff tablet: rooms, alerts, live updates, acknowledge and resolve."""

from __future__ import annotations

import uuid

from aiohttp import web
from psycopg.rows import dict_row

from nattillsyn.alerting import store
from nattillsyn.protocol import AlertAction, TopicKind, encode

from .context import (
    HUB,
    MQTT,
    POOL,
    TOPICS,
    USER,
    audit,
    json_response,
    read_body,
    request_site,
)
from .models import Accepted, AlertActionRequest, RoomView, Snapshot
from .problems import ProblemError
from .routing import Routes

routes = Routes("tablet")
STAFF = ("night_staff", "unit_manager", "sysadmin")


async def _rooms(request: web.Request, site: str) -> list[RoomView]:
    async with request.app[POOL].connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT r.id, r.name, s.state, s.since, s.ts AS updated,
                      d.availability, d.last_heartbeat
               FROM rooms r
               LEFT JOIN LATERAL (
                   SELECT state, since, ts FROM room_states
                   WHERE site = r.site_id AND room = r.id ORDER BY ts DESC LIMIT 1) s ON true
               LEFT JOIN LATERAL (
                   SELECT availability, last_heartbeat FROM devices
                   WHERE site_id = r.site_id AND room_id = r.id
                   ORDER BY last_seen DESC NULLS LAST LIMIT 1) d ON true
               WHERE r.site_id = %s ORDER BY r.id""",
            (site,),
        )
        rows = await cur.fetchall()
    return [
        RoomView(
            id=r["id"],
            name=r["name"],
            state=r["state"] or "unknown",
            since=r["since"],
            updated=r["updated"],
            device_online=None
            if r["availability"] in (None, "unknown")
            else r["availability"] == "online",
            last_heartbeat=r["last_heartbeat"],
        )
        for r in rows
    ]


async def _snapshot(request: web.Request, site: str) -> Snapshot:
    rooms = await _rooms(request, site)
    async with request.app[POOL].connection() as conn:
        alerts = await store.for_board(conn, site)
    await audit(
        request, "read", "board", site=site, detail={"rooms": len(rooms), "alerts": len(alerts)}
    )
    return Snapshot(rooms=rooms, alerts=alerts)


@routes.get("/api/v1/board", roles=STAFF, response=Snapshot, query=("site",))
async def board(request: web.Request) -> web.Response:
    """Rooms with their state and the open alerts (the same as the WebSocket's first message)."""
    return json_response(await _snapshot(request, await request_site(request)))


@routes.get("/api/v1/ws", roles=STAFF, status=101, query=("site",))
async def live(request: web.Request) -> web.WebSocketResponse:
    """WebSocket: a snapshot, then `alert` and `state` messages as they happen."""
    site = await request_site(request)
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    snapshot = await _snapshot(request, site)
    await request.app[HUB].serve(ws, site, snapshot.model_dump(mode="json"))
    return ws


async def _act(request: web.Request, action: str) -> web.Response:
    try:
        alert_id = uuid.UUID(request.match_info["alert_id"])
    except ValueError:
        raise ProblemError(404, "Not Found", "no such alert") from None
    body = await read_body(request, AlertActionRequest)
    async with request.app[POOL].connection() as conn:
        alert = await store.get(conn, alert_id)
    if alert is None or not request[USER].may_see(alert.site):
        raise ProblemError(404, "Not Found", "no such alert")
    msg = AlertAction(
        alert_id=alert_id,
        action=action,  # type: ignore[arg-type]
        by=request[USER].username,
        outcome=body.outcome if action == "resolve" else None,
    )
    topic = request.app[TOPICS].room(alert.site, alert.room, TopicKind.alert_set)
    await request.app[MQTT].publish(topic, encode(msg), qos=1)
    await audit(
        request,
        "change",
        f"alert {action}",
        site=alert.site,
        room=alert.room,
        detail={"alert_id": str(alert_id), "outcome": msg.outcome},
    )
    return json_response(Accepted(action_id=msg.id), status=202)


@routes.post(
    "/api/v1/alerts/{alert_id}/acknowledge",
    roles=STAFF,
    request=AlertActionRequest,
    request_required=False,
    response=Accepted,
    status=202,
)
async def acknowledge(request: web.Request) -> web.Response:
    """Acknowledge an alert (kvittera): staff are on their way."""
    return await _act(request, "acknowledge")


@routes.post(
    "/api/v1/alerts/{alert_id}/resolve",
    roles=STAFF,
    request=AlertActionRequest,
    request_required=False,
    response=Accepted,
    status=202,
)
async def resolve(request: web.Request) -> web.Response:
    """Resolve an alert with its outcome (needed help / false alarm / not needed)."""
    return await _act(request, "resolve")
