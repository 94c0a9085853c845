"""Errors as RFC 9457 problem+json, and a middleware so nothing leaks a traceback."""

from __future__ import annotations

import json

from aiohttp import web
from pydantic import ValidationError

from nattillsyn import log

logger = log.get(__name__)

CONTENT_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str | None = None, **extra) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return web.Response(status=status, text=json.dumps(body), content_type=CONTENT_TYPE)


class ProblemError(Exception):
    def __init__(self, status: int, title: str, detail: str | None = None, **extra) -> None:
        super().__init__(detail or title)
        self.response = problem(status, title, detail, **extra)


def validation_problem(exc: ValidationError) -> web.Response:
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
        for e in exc.errors()
    ]
    return problem(
        422,
        "Invalid request body",
        "; ".join(f"{e['field']}: {e['message']}" for e in errors),
        errors=errors,
    )


@web.middleware
async def problem_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ProblemError as exc:
        return exc.response
    except ValidationError as exc:
        return validation_problem(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason)
    except Exception:
        logger.exception("unhandled error", path=request.path)
        return problem(500, "Internal Server Error")
