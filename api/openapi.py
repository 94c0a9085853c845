"""The OpenAPI 3.1 document, built from the HTTP contract's pydantic models.

Each operation is declared once here next to its models; a test checks that
every route the app serves under /api/ is in the document and vice versa.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from nattillsyn import __version__

from .models import Accepted, AlertActionRequest, LoginRequest, Me, Problem, Snapshot


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    auth: bool = True
    tag: str = "tablet"


OPERATIONS = [
    Op(
        "post",
        "/api/v1/login",
        "Sign in (sets the session cookie)",
        LoginRequest,
        Me,
        auth=False,
        tag="session",
    ),
    Op("post", "/api/v1/logout", "Sign out", status=204, tag="session"),
    Op("get", "/api/v1/me", "The signed-in user", response=Me, tag="session"),
    Op("get", "/api/v1/board", "Rooms with state and open alerts", response=Snapshot),
    Op("get", "/api/v1/ws", "WebSocket: snapshot, then live alert and state messages", status=101),
    Op(
        "post",
        "/api/v1/alerts/{alert_id}/acknowledge",
        "Acknowledge an alert",
        AlertActionRequest,
        Accepted,
        202,
    ),
    Op(
        "post",
        "/api/v1/alerts/{alert_id}/resolve",
        "Resolve an alert with its outcome",
        AlertActionRequest,
        Accepted,
        202,
    ),
    Op("get", "/api/v1/openapi.json", "This document", auth=False, tag="meta"),
]

REF = "#/components/schemas/{model}"


def _problem(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}},
    }


def document() -> dict:
    models = {m for op in OPERATIONS for m in (op.request, op.response) if m} | {Problem}
    _, schemas = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=REF,
    )
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        o: dict = {
            "summary": op.summary,
            "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_')}".replace(
                "{", ""
            ).replace("}", ""),
            "tags": [op.tag],
            "responses": {},
        }
        params = [p.strip("{}") for p in op.path.split("/") if p.startswith("{")]
        if params:
            o["parameters"] = [
                {
                    "name": p,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
                for p in params
            ]
        if op.request:
            o["requestBody"] = {
                "required": op.request is LoginRequest,
                "content": {
                    "application/json": {"schema": {"$ref": REF.format(model=op.request.__name__)}}
                },
            }
        ok: dict = {"description": "OK"}
        if op.response:
            ok["content"] = {
                "application/json": {"schema": {"$ref": REF.format(model=op.response.__name__)}}
            }
        o["responses"][str(op.status)] = ok
        if op.auth:
            o["security"] = [{"session": []}]
            o["responses"]["401"] = _problem("Not signed in")
            o["responses"]["403"] = _problem("Role may not do this")
        if op.request:
            o["responses"]["415"] = _problem("Body is not JSON")
            o["responses"]["422"] = _problem("Body fails validation")
        if params:
            o["responses"]["404"] = _problem("No such resource")
        paths.setdefault(op.path, {})[op.method] = o
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nattillsyn api",
            "version": __version__,
            "description": "Open API of nattillsyn: tablet app, administration, evaluation. "
            "Errors are RFC 9457 problem+json.",
            "license": {"name": "AGPL-3.0-or-later"},
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "nattillsyn_session"}
            },
        },
    }


async def handler(request: web.Request) -> web.Response:
    return web.json_response(document())
