"""The OpenAPI 3.1 document, built from the routes and the HTTP contract's pydantic models."""

from __future__ import annotations

from aiohttp import web
from pydantic.json_schema import models_json_schema

from nattillsyn import __version__

from .models import Problem
from .routing import Op, Routes

REF = "#/components/schemas/{model}"
DOCUMENT = web.AppKey("openapi", dict)


def _problem(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}},
    }


def _operation(op: Op) -> dict:
    o: dict = {
        "summary": op.summary,
        "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_')}".replace(
            "{", ""
        ).replace("}", ""),
        "tags": [op.tag],
        "responses": {},
    }
    params = [
        {"name": p.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
        for p in op.path.split("/")
        if p.startswith("{")
    ]
    params += [
        {"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
        for q in op.query
    ]
    if params:
        o["parameters"] = params
    if op.request:
        o["requestBody"] = {
            "required": op.request_required,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=op.request.__name__)}}
            },
        }
    ok: dict = {"description": "OK"}
    if op.response:
        ok["content"] = {
            op.response_type: {"schema": {"$ref": REF.format(model=op.response.__name__)}}
        }
    o["responses"][str(op.status)] = ok
    if op.auth:
        o["security"] = [{"session": []}]
        o["responses"]["401"] = _problem("Not signed in")
        o["responses"]["403"] = _problem("Role or unit may not do this")
    if op.request:
        o["responses"]["415"] = _problem("Body is not JSON")
        o["responses"]["422"] = _problem("Body fails validation")
    if any(p["in"] == "path" for p in params):
        o["responses"]["404"] = _problem("No such resource")
    if params:
        o["responses"]["400"] = _problem("Bad path or query parameter")
    if "site" in op.query:
        o["responses"].setdefault("404", _problem("No such unit"))
    for status in op.problems:
        o["responses"].setdefault(str(status), _problem(PROBLEMS.get(status, "Refused")))
    if op.roles:
        o["x-roles"] = list(op.roles)
    return o


PROBLEMS = {
    400: "Bad request",
    404: "No such resource",
    409: "Conflicts with the current state",
    422: "Fails validation",
    429: "Too many attempts; see Retry-After",
}


def document(routes: list[Routes]) -> dict:
    ops = [op for r in routes for op in r.operations]
    models = {m for op in ops for m in (op.request, op.response) if m} | {Problem}
    _, schemas = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    paths: dict[str, dict] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nattillsyn api",
            "version": __version__,
            "description": "Open API of nattillsyn: tablet app, administration, evaluation. "
            "Errors are RFC 9457 problem+json.",
            "license": {"name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later"},
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "nattillsyn_session"}
            },
        },
    }


meta = Routes("meta")


@meta.get("/api/v1/openapi.json", roles=None)
async def openapi_json(request: web.Request) -> web.Response:
    """This document (OpenAPI 3.1)."""
    return web.json_response(request.app[DOCUMENT])
