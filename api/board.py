"""The night-staff tablet: board of rooms and alerts, live updates, acknowledge and resolve,
silences, practice alerts, and the risk-preset catalogue for the admin UI."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from aiohttp import web

from nattillsyn.alerting import alerts_db, rounds_db
from nattillsyn.protocol import AlertAction, TopicKind, encode

from . import auth
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
from .live import Client
from .models import (
    Accepted,
    AlertActionRequest,
    PracticeAlertRequest,
    PracticeStarted,
    ResolveRequest,
    RoomView,
    Silence,
    SilenceList,
    SilenceRequest,
    Snapshot,
)
from .problems import ProblemError
from .queries import board as db
from .queries.units import room_exists, site_exists
from .routing import Routes
from .shared_tablets import audit_tablet, tablet_for

routes = Routes("tablet")
STAFF = ("night_staff", "unit_manager", "sysadmin")
MANAGERS = ("unit_manager", "sysadmin")
NIGHT = timedelta(hours=14)  # "tonight" on the board: rounds and visits of the last 14 h
# Kinds only a manager may silence: a fall must never be muted by the person on duty alone.
GUARDED_KINDS = {"possible_fall", "on_floor"}


async def _rooms(request: web.Request, site: str, with_residents: bool) -> list[RoomView]:
    async with request.app[POOL].connection() as conn:
        rows = await db.rooms(conn, site)
    if not with_residents:
        return [RoomView(id=r["id"], name=r["name"], state="unknown") for r in rows]
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
            resident=r["display_name"],
            monitored=r["monitored"],
        )
        for r in rows
    ]


async def _tonight(request: web.Request, site: str) -> tuple[list[dict], list[dict]]:
    since = datetime.now(UTC) - NIGHT
    async with request.app[POOL].connection() as conn:
        rounds = [rounds_db.as_json(r) for r in await rounds_db.rounds_since(conn, site, since)]
        visits = [
            rounds_db.as_json(r) for r in await rounds_db.visits_since(conn, site, since, 200)
        ]
    return rounds, visits


async def _snapshot(
    request: web.Request, site: str, after: int | None = None, locked: bool = False
) -> Snapshot:
    rooms = await _rooms(request, site, with_residents=not locked)
    async with request.app[POOL].connection() as conn:
        cursor = await alerts_db.cursor(conn)
        alerts = await alerts_db.for_board(conn, site)
        if after is not None:
            # Replay: every alert that changed while the client was away, even if it was
            # raised and resolved long enough ago to be off the board.
            seen = {a.alert_id for a in alerts}
            alerts += [
                a
                for a in await alerts_db.changed_since(conn, site, after)
                if a.alert_id not in seen
            ]
    rounds, visits = ([], []) if locked else await _tonight(request, site)
    detail = {"rooms": len(rooms), "alerts": len(alerts), "rounds": len(rounds), "after": after}
    if locked:
        tablet = await tablet_for(request)
        if tablet is not None:
            await audit_tablet(request, tablet, "read", "board (locked)", detail)
    else:
        await audit(request, "read", "board", site=site, detail=detail)
    return Snapshot(
        rooms=rooms,
        alerts=alerts,
        cursor=cursor,
        rounds=rounds,
        visits=visits,
        locked=locked,
        alerting_ok=request.app[HUB].alerting_ok,
    )


@routes.get("/api/v1/board", roles=STAFF, response=Snapshot, query=("site", "after"))
async def board(request: web.Request) -> web.Response:
    """Rooms, alerts, tonight's rounds and visits (the same as the WebSocket's first message)."""
    return json_response(await _snapshot(request, await request_site(request), _after(request)))


def _after(request: web.Request) -> int | None:
    raw = request.query.get("after")
    if raw is None or raw == "":
        return None
    try:
        return min(max(0, int(raw)), 2**62)  # a bigint in the database
    except ValueError:
        raise ProblemError(400, "Bad Request", "after must be an integer") from None


@routes.get("/api/v1/ws", roles=None, status=101, query=("site", "after"), problems=(400, 401, 403))
async def live(request: web.Request) -> web.WebSocketResponse:
    """WebSocket: a snapshot (with the alerts missed since `after`), then live messages.

    Signed-in staff get rooms, alerts, rounds and visits; an enrolled tablet with nobody
    signed in (lock screen) gets alerts only. Closed with 4401 when the session ends.
    """
    after = _after(request)
    token = request.cookies.get(auth.COOKIE)
    user = None
    if token:
        async with request.app[POOL].connection() as conn:
            user = await auth.user_for(conn, token)
    tablet = await tablet_for(request)
    if user is not None and user.role in STAFF:
        request[USER] = user
        site = request.query.get("site") or (
            tablet.site if tablet and user.may_see(tablet.site) else None
        )
        if site is None:
            site = await request_site(request)
        elif not user.may_see(site):
            raise ProblemError(403, "Forbidden", "not a unit of yours")
        pool = request.app[POOL]

        async def still_valid() -> bool:
            async with pool.connection() as conn:
                return await auth.user_for(conn, token) is not None

        client = Client(
            web.WebSocketResponse(heartbeat=20),
            site,
            locked=False,
            groups=frozenset(tablet.groups if tablet else ()),
            sites=frozenset(user.sites),
            still_valid=still_valid,
        )
    elif tablet is not None:
        site = tablet.site

        async def tablet_valid() -> bool:
            return await tablet_for(request) is not None  # revoked: the stream ends

        client = Client(
            web.WebSocketResponse(heartbeat=20),
            site,
            locked=True,
            groups=frozenset(tablet.groups),
            sites=frozenset({site}),
            still_valid=tablet_valid,
        )
    else:
        raise ProblemError(401, "Unauthorized", "sign in first")
    await client.ws.prepare(request)
    locked = client.locked

    async def first() -> dict:
        snap = await _snapshot(request, site, after, locked=locked)
        return snap.model_dump(mode="json", exclude_none=True)

    await request.app[HUB].serve(client, first)
    return client.ws


async def _act(request: web.Request, action: str, outcome: str | None) -> web.Response:
    try:
        alert_id = uuid.UUID(request.match_info["alert_id"])
    except ValueError:
        raise ProblemError(404, "Not Found", "no such alert") from None
    async with request.app[POOL].connection() as conn:
        alert = await alerts_db.get(conn, alert_id)
    if alert is None or not request[USER].may_see(alert.site):
        raise ProblemError(404, "Not Found", "no such alert")
    msg = AlertAction(
        alert_id=alert_id,
        action=action,  # type: ignore[arg-type]
        by=request[USER].username,
        outcome=outcome,  # type: ignore[arg-type]
    )
    topic = request.app[TOPICS].room(alert.site, alert.room, TopicKind.alert_set)
    await request.app[MQTT].publish(topic, encode(msg), qos=1)
    await audit(
        request,
        "change",
        f"alert {action}",
        site=alert.site,
        room=alert.room,
        detail={"alert_id": str(alert_id), "outcome": outcome, "practice": alert.practice},
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
    if request.can_read_body:
        await read_body(request, AlertActionRequest)
    return await _act(request, "acknowledge", None)


@routes.post(
    "/api/v1/alerts/{alert_id}/resolve",
    roles=STAFF,
    request=ResolveRequest,
    response=Accepted,
    status=202,
)
async def resolve(request: web.Request) -> web.Response:
    """Resolve an alert with its outcome (needed help / false alarm / not needed)."""
    body = await read_body(request, ResolveRequest)
    return await _act(request, "resolve", body.outcome)


# -- silences --------------------------------------------------------------------------


def _silence(row) -> Silence:
    """A row of queries.board.SILENCE_COLUMNS."""
    return Silence(
        id=row[0],
        site=row[1],
        room=row[2],
        kinds=list(row[3]),
        starts_at=row[4],
        ends_at=row[5],
        reason=row[6],
        created_by=row[7],
    )


@routes.post(
    "/api/v1/silences",
    roles=STAFF,
    request=SilenceRequest,
    response=Silence,
    status=201,
    query=("site",),
)
async def create_silence(request: web.Request) -> web.Response:
    """Silence alerts of a room (or the unit) for a while, with a reason: recorded, not sounded."""
    body = await read_body(request, SilenceRequest)
    site = await request_site(request)
    user: auth.User = request[USER]
    guarded = not body.kinds or GUARDED_KINDS & set(body.kinds)
    if guarded and user.role not in MANAGERS:
        raise ProblemError(
            403, "Forbidden", "only a unit manager may silence falls or every kind of alert"
        )
    if user.role not in MANAGERS and body.minutes > 120:
        raise ProblemError(403, "Forbidden", "night staff may silence for at most 120 minutes")
    now = datetime.now(UTC)
    async with request.app[POOL].connection() as conn:
        if not await site_exists(conn, site):
            raise ProblemError(404, "Not Found", "no such unit")
        row = await db.insert_silence(
            conn, site, body.room, body.kinds, now, now + timedelta(minutes=body.minutes),
            body.reason, user.username,
        )  # fmt: skip
    await audit(request, "change", "silence", site=site, room=body.room, detail=body.model_dump())
    return json_response(_silence(row), status=201)


@routes.get("/api/v1/silences", roles=STAFF, response=SilenceList, query=("site",))
async def list_silences(request: web.Request) -> web.Response:
    """Active silences of a unit."""
    site = await request_site(request)
    async with request.app[POOL].connection() as conn:
        rows = await db.active_silences(conn, site)
    # Reasons may say something about a resident ("vaken, tittar på tv"): a logged read.
    await audit(request, "read", "silences", site=site, detail={"silences": len(rows)})
    return json_response(SilenceList(silences=[_silence(r) for r in rows]))


@routes.post("/api/v1/silences/{silence_id}/end", roles=STAFF, status=204)
async def end_silence(request: web.Request) -> web.Response:
    """End a silence early."""
    user: auth.User = request[USER]
    silence_id = request.match_info["silence_id"]
    async with request.app[POOL].connection() as conn:
        site = await db.silence_site(conn, silence_id)
        if site is None or not user.may_see(site):
            raise ProblemError(404, "Not Found", "no such silence")
        await db.end_silence(conn, silence_id, user.username)
    await audit(request, "change", "silence end", site=site)
    return web.Response(status=204)


# -- practice --------------------------------------------------------------------------


@routes.post(
    "/api/v1/practice/alerts",
    roles=MANAGERS,
    request=PracticeAlertRequest,
    response=PracticeStarted,
    status=202,
    query=("site",),
)
async def practice_alert(request: web.Request) -> web.Response:
    """Raise a practice alert (staff training): marked ÖVNING, never counted or paged out."""
    body = await read_body(request, PracticeAlertRequest)
    site = await request_site(request)
    async with request.app[POOL].connection() as conn:
        if not await room_exists(conn, site, body.room):
            raise ProblemError(422, "Invalid request body", "room: no such room in this unit")
    alert_id = uuid.uuid4()
    msg = AlertAction(
        alert_id=alert_id,
        action="raise_practice",
        by=request[USER].username,
        kind=body.kind,
        priority=body.priority,  # type: ignore[arg-type]
    )
    topic = request.app[TOPICS].room(site, body.room, TopicKind.alert_set)
    await request.app[MQTT].publish(topic, encode(msg), qos=1)
    await audit(request, "change", "practice alert", site=site, room=body.room)
    return json_response(PracticeStarted(alert_id=alert_id), status=202)
