"""`create_app`: the Starlette app that serves a backend through every dialect and transport."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenwire._host import BackendHost
from tokenwire.endpoint import DEFAULT_MAX_BODY_BYTES, Endpoint
from tokenwire.errors import TokenwireError
from tokenwire.interfaces import Backend, Dialect, Generate, MiddlewareFactory, Transport
from tokenwire.plugins import load_plugin
from tokenwire.requests import new_request_id
from tokenwire.transports._http import send_error

DEFAULT_DIALECTS = ("openai-chat", "openai-completions", "anthropic", "gemini")
# First match wins: SSE takes any HTTP request, so it goes last.
DEFAULT_TRANSPORTS = ("websocket", "ndjson", "sse")

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class DialectRoute:
    """The ASGI app behind one dialect path: picks the transport, which does the rest."""

    def __init__(
        self, endpoint: Endpoint, transports: Sequence[Transport], host: BackendHost
    ) -> None:
        self.endpoint = endpoint
        self.transports = transports
        self.host = host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["request_id"] = _request_id(scope)
        transport = next((t for t in self.transports if t.accepts(scope)), None)
        if transport is None:
            await Response("No transport accepts this request.", status_code=406)(
                scope, receive, send
            )
            return
        try:
            await self.host.ensure_started()
        except TokenwireError as error:
            if scope["type"] == "http":
                await send_error(scope, send, self.endpoint, error)
            else:
                await send({"type": "websocket.close", "code": 1013, "reason": error.message})
            return
        await transport(scope, receive, send, self.endpoint)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _CLIENT_REQUEST_ID.fullmatch(candidate):
                return candidate
    return new_request_id()


def _load(kind: str, item: Any) -> Any:
    """A plugin given by name or `module:attr` is loaded and instantiated; objects pass through."""
    if isinstance(item, str):
        return load_plugin(kind, item)()  # type: ignore[arg-type,operator]
    return item


def _middleware(item: MiddlewareFactory | str) -> MiddlewareFactory:
    if isinstance(item, str):
        factory: MiddlewareFactory = load_plugin("middlewares", item)  # type: ignore[assignment]
        return factory
    return item


def build_routes(
    host: BackendHost,
    *,
    middlewares: Sequence[MiddlewareFactory | str] = (),
    dialects: Iterable[Dialect | str] = DEFAULT_DIALECTS,
    transports: Iterable[Transport | str] = DEFAULT_TRANSPORTS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    keepalive_seconds: float = 15.0,
) -> list[BaseRoute]:
    """The routes of a tokenwire app, for `create_app` and `TokenwireMiddleware`."""
    backend = host.backend
    pipeline: Generate = backend.generate
    middleware_routes: list[BaseRoute] = []
    for middleware_item in reversed(middlewares):
        pipeline = _middleware(middleware_item)(pipeline)
        # A middleware may serve HTTP routes of its own (/metrics, DELETE /v1/requests/{id}).
        middleware_routes.extend(getattr(pipeline, "routes", ()))
    pipeline = host.guard(pipeline)
    transport_list: list[Transport] = [_load("transports", t) for t in transports]

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        host.kick()  # mounted apps have no lifespan: a probe is a fine first caller
        if host.ready:
            return JSONResponse({"status": "ready", "model": backend.model_id})
        return JSONResponse({"status": host.state, "model": backend.model_id}, status_code=503)

    def model_card() -> dict[str, Any]:
        return {"id": backend.model_id, "object": "model", "created": 0, "owned_by": "tokenwire"}

    async def list_models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [model_card()]})

    async def get_model(request: Request) -> Response:
        if request.path_params["model_id"] != backend.model_id:
            error = {
                "message": f"The model {request.path_params['model_id']!r} does not exist; "
                f"this server serves {backend.model_id!r}.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
            return JSONResponse({"error": error}, status_code=404)
        return JSONResponse(model_card())

    routes: list[BaseRoute] = [
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id}", get_model, methods=["GET"]),
        *middleware_routes,
    ]
    for dialect_item in dialects:
        dialect: Dialect = _load("dialects", dialect_item)
        endpoint = Endpoint(
            dialect,
            pipeline,
            backend.model_id,
            max_body_bytes=max_body_bytes,
            keepalive_seconds=keepalive_seconds,
        )
        route_app = DialectRoute(endpoint, transport_list, host)
        for path in dialect.routes:
            routes.append(Route(path, route_app, methods=["POST"]))
            routes.append(WebSocketRoute(path, route_app))
    return routes


def create_app(
    backend: Backend,
    *,
    middlewares: Sequence[MiddlewareFactory | str] = (),
    dialects: Iterable[Dialect | str] = DEFAULT_DIALECTS,
    transports: Iterable[Transport | str] = DEFAULT_TRANSPORTS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    keepalive_seconds: float = 15.0,
) -> Starlette:
    """A Starlette app serving `backend` through every dialect and transport.

    Works as the whole server or mounted under a prefix (`app.mount("/llm", ...)`): mounted
    apps get no lifespan, so the backend then starts on the first request.

    Args:
        backend: the model backend; started by the app's lifespan (or lazily when mounted).
        middlewares: stream middlewares, outermost first: classes, `functools.partial`s of
            them, or plugin names.
        dialects: API dialects to serve (instances or plugin names).
        transports: transports in order of preference; the first that accepts a request
            serves it (SSE accepts any HTTP request, so it belongs last).
        max_body_bytes: larger request bodies get 413.
        keepalive_seconds: idle time before an SSE keep-alive is sent.
    """
    host = BackendHost(backend)
    routes = build_routes(
        host,
        middlewares=middlewares,
        dialects=dialects,
        transports=transports,
        max_body_bytes=max_body_bytes,
        keepalive_seconds=keepalive_seconds,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with host.running():
            yield

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.tokenwire_host = host
    return app


class TokenwireMiddleware:
    """ASGI middleware form: answers tokenwire's routes and passes everything else to `app`.

    Takes the same keyword arguments as `create_app`. The backend runs for the duration of
    the wrapped app's lifespan, or starts on the first request when there is none.
    """

    def __init__(self, app: ASGIApp, *, backend: Backend, **options: Any) -> None:
        self.app = app
        self.host = BackendHost(backend)
        self.router = Router(routes=build_routes(self.host, **options), default=app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            async with self.host.running():
                await self.app(scope, receive, send)
            return
        await self.router(scope, receive, send)
