"""Routes declared once: the aiohttp route, its access rule and its OpenAPI operation.

    routes = Routes("tablet")

    @routes.post("/api/v1/alerts/{alert_id}/acknowledge", roles=STAFF,
                 request=AlertActionRequest, response=Accepted, status=202)
    async def acknowledge(request): ...

The handler's docstring is the operation's summary; `roles=None` means public.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

from .context import Handler, require

ANY_ROLE: tuple[str, ...] = ()


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    tag: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    auth: bool = True
    request_required: bool = True
    response_type: str = "application/json"
    query: tuple[str, ...] = ()  # optional string query parameters
    roles: tuple[str, ...] = ()  # who may call it (empty: any signed-in user)
    problems: tuple[int, ...] = ()  # further problem+json statuses it may answer


class Routes:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.table = web.RouteTableDef()
        self.operations: list[Op] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        roles: tuple[str, ...] | None = ANY_ROLE,
        request: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        request_required: bool = True,
        response_type: str = "application/json",
        query: tuple[str, ...] = (),
        problems: tuple[int, ...] = (),
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            summary = (handler.__doc__ or handler.__name__).strip().splitlines()[0]
            guarded = handler if roles is None else require(*roles)(handler)
            self.table.route(method.upper(), path)(guarded)
            self.operations.append(
                Op(
                    method.lower(),
                    path,
                    summary,
                    self.tag,
                    request,
                    response,
                    status,
                    roles is not None,
                    request_required,
                    response_type,
                    query,
                    roles or (),
                    problems,
                )
            )
            return guarded

        return register

    def get(self, path: str, **kw) -> Callable[[Handler], Handler]:
        return self.route("get", path, **kw)

    def post(self, path: str, **kw) -> Callable[[Handler], Handler]:
        return self.route("post", path, **kw)

    def put(self, path: str, **kw) -> Callable[[Handler], Handler]:
        return self.route("put", path, **kw)

    def patch(self, path: str, **kw) -> Callable[[Handler], Handler]:
        return self.route("patch", path, **kw)

    def delete(self, path: str, **kw) -> Callable[[Handler], Handler]:
        return self.route("delete", path, **kw)
