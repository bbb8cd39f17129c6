"""`create_app`: the Starlette app that serves a backend through every dialect and transport."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenwire._auth_gate import AuthGate
from tokenwire._host import BackendHost
from tokenwire.auth import ApiKeys, ConcurrencyLimit
from tokenwire.endpoint import Endpoint
from tokenwire.errors import (
    MethodNotAllowedError,
    TokenwireError,
)
from tokenwire.interfaces import Backend, Dialect, Generate, MiddlewareFactory, Transport
from tokenwire.limits import Limits
from tokenwire.logs import request_id_var
from tokenwire.openapi import openapi_routes
from tokenwire.plugins import load_plugin
from tokenwire.requests import GenerationRequest, new_request_id
from tokenwire.resume import ResumeConfig, ResumeService, StreamResumeRoute
from tokenwire.transports._backpressure import SendBuffers
from tokenwire.transports._http import response_headers, send_error, send_json

DEFAULT_DIALECTS = ("openai-chat", "openai-completions", "anthropic", "gemini")
# First match wins: SSE takes any HTTP request, so it goes last.
DEFAULT_TRANSPORTS = ("websocket", "ndjson", "sse")
# Open even when API keys are on: probes, scrapers and the playground page.
DEFAULT_PUBLIC_PATHS = ("/health/live", "/health/ready", "/metrics", "/", "/openapi.json")

logger = logging.getLogger("tokenwire.access")

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class DialectRoute:
    """The ASGI app behind one dialect path: picks the transport, which does the rest."""

    def __init__(
        self,
        endpoint: Endpoint,
        transports: Sequence[Transport],
        host: BackendHost,
        concurrency: ConcurrencyLimit,
    ) -> None:
        self.endpoint = endpoint
        self.transports = transports
        self.host = host
        self.concurrency = concurrency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "POST":
            # Answered here, not by the router, so the 405 comes in the dialect's shape.
            scope.setdefault("state", {})["request_id"] = _request_id(scope)
            error = MethodNotAllowedError(
                f"{scope['method']} is not allowed here; send the request with POST."
            )
            rendered = self.endpoint.render_error(error)
            headers = response_headers(scope, self.endpoint, {**rendered.headers, "allow": "POST"})
            await send_json(send, 405, rendered.content, headers)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        scope["state"]["received_at"] = time.perf_counter()
        request_id_var.set(request_id)
        transport = next((t for t in self.transports if t.accepts(scope)), None)
        if transport is None:
            await Response("No transport accepts this request.", status_code=406)(
                scope, receive, send
            )
            return
        key = scope["state"].get("api_key", "")
        started = time.perf_counter()
        status = 0

        async def send_watching_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "websocket.accept":
                status = 101
            await send(message)

        try:
            try:
                await self.host.ensure_started()
                self.concurrency.acquire(key)
            except TokenwireError as error:
                await self._refuse(scope, send_watching_status, error)
                return
            try:
                await transport(scope, receive, send_watching_status, self.endpoint)
            finally:
                self.concurrency.release(key)
        finally:
            # The access log line: no body, no prompt; the request id comes from the context.
            logger.info(
                "%s %s %s via %s in %.1f ms",
                scope.get("method", "WS"),
                scope["path"],
                status or "-",
                transport.name,
                (time.perf_counter() - started) * 1000,
            )

    async def _refuse(self, scope: Scope, send: Send, error: TokenwireError) -> None:
        if scope["type"] == "http":
            await send_error(scope, send, self.endpoint, error)
        else:
            # Closing before accepting makes the server answer the upgrade with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": "no such path"})
        return
    path = scope["path"][:200]
    error = {"message": f"No route for {scope['method']} {path}.", "type": "not_found_error"}
    await JSONResponse({"error": error}, status_code=404)(scope, receive, send)


async def _routing_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (a method a route does not take) as JSON, not plain text."""
    assert isinstance(exc, HTTPException)
    error = {"message": exc.detail, "type": "invalid_request_error"}
    return JSONResponse({"error": error}, exc.status_code, headers=exc.headers)


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


def build_router(
    host: BackendHost,
    *,
    middlewares: Sequence[MiddlewareFactory | str] = (),
    dialects: Iterable[Dialect | str] = DEFAULT_DIALECTS,
    transports: Iterable[Transport | str] = DEFAULT_TRANSPORTS,
    limits: Limits = Limits(),
    api_keys: Iterable[str] = (),
    public_paths: Iterable[str] = DEFAULT_PUBLIC_PATHS,
    keepalive_seconds: float = 15.0,
    playground: bool = True,
    resume: ResumeConfig | None = None,
    default: ASGIApp | None = None,
) -> ASGIApp:
    """tokenwire's routes behind its auth gate, for `create_app` and `TokenwireMiddleware`.

    `default` answers paths that are not tokenwire's (404 when None).
    """
    backend = host.backend
    api_keys = tuple(api_keys)
    pipeline: Generate = backend.generate
    middleware_routes: list[BaseRoute] = []
    first_byte_observers: list[Callable[[GenerationRequest, float], None]] = []
    send_buffers = SendBuffers()
    for middleware_item in reversed(middlewares):
        pipeline = _middleware(middleware_item)(pipeline)
        # A middleware may serve HTTP routes of its own (/metrics, DELETE /v1/requests/{id})
        # and time the first response byte, which only the transport sees.
        middleware_routes.extend(getattr(pipeline, "routes", ()))
        observer = getattr(pipeline, "observe_first_byte", None)
        if observer is not None:
            first_byte_observers.append(observer)
        # The metrics middleware's registry also exports the transports' buffered bytes.
        registry = getattr(pipeline, "registry", None)
        if isinstance(registry, CollectorRegistry):
            send_buffers.register(registry)
    pipeline = host.guard(pipeline)
    transport_list: list[Transport] = [_load("transports", t) for t in transports]
    concurrency = ConcurrencyLimit(limits.max_concurrent_per_key)
    resume_service = ResumeService(host, resume) if resume is not None else None

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        host.kick()  # mounted apps have no lifespan: a probe is a fine first caller
        if host.ready:
            return JSONResponse({"status": "ready", "model": backend.model_id})
        return JSONResponse({"status": host.readiness, "model": backend.model_id}, status_code=503)

    def model_card() -> dict[str, Any]:
        return {"id": backend.model_id, "object": "model", "created": 0, "owned_by": "tokenwire"}

    async def list_models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [model_card()]})

    async def get_model(request: Request) -> Response:
        if request.path_params["model_id"] != backend.model_id:
            error = {
                "message": f"The model {request.path_params['model_id'][:100]!r} does not exist; "
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
    if playground:
        from tokenwire.playground import playground_routes

        routes.extend(playground_routes())
    dialect_routes: list[tuple[BaseRoute, Endpoint]] = []
    loaded_dialects: list[str] = []
    for dialect_item in dialects:
        dialect: Dialect = _load("dialects", dialect_item)
        loaded_dialects.append(dialect.name)
        endpoint = Endpoint(
            dialect,
            pipeline,
            backend.model_id,
            limits=limits,
            keepalive_seconds=keepalive_seconds,
            resume=resume_service,
            first_byte_observers=tuple(first_byte_observers),
            send_buffers=send_buffers,
        )
        route_app = DialectRoute(endpoint, transport_list, host, concurrency)
        for path in dialect.routes:
            for route in (
                Route(path, route_app),
                WebSocketRoute(path, route_app),
            ):
                routes.append(route)
                dialect_routes.append((route, endpoint))
    paths = {route.path for route in middleware_routes if isinstance(route, Route)}
    routes.extend(
        openapi_routes(
            backend.model_id,
            dialects=loaded_dialects,
            limits=limits,
            cancellation="/v1/requests/{request_id}" in paths,
            metrics="/metrics" in paths,
            playground=playground,
            resume=resume is not None,
            api_keys=bool(api_keys),
        )
    )
    fallback = dialect_routes[0][1] if dialect_routes else None
    if resume_service is not None:
        routes.append(
            Route("/v1/streams/{request_id}", StreamResumeRoute(resume_service), methods=["GET"])
        )
    router: ASGIApp = ExceptionMiddleware(
        Router(routes=routes, default=default or _not_found),
        handlers={HTTPException: _routing_error},
    )
    keys = ApiKeys(api_keys)
    if not keys.enabled or fallback is None:
        return router
    return AuthGate(router, keys, routes, dialect_routes, public_paths, fallback)


def create_app(
    backend: Backend,
    *,
    middlewares: Sequence[MiddlewareFactory | str] = (),
    dialects: Iterable[Dialect | str] = DEFAULT_DIALECTS,
    transports: Iterable[Transport | str] = DEFAULT_TRANSPORTS,
    limits: Limits = Limits(),
    api_keys: Iterable[str] = (),
    public_paths: Iterable[str] = DEFAULT_PUBLIC_PATHS,
    cors_origins: Sequence[str] = (),
    keepalive_seconds: float = 15.0,
    playground: bool = True,
    resume: ResumeConfig | None = None,
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
        limits: body size, token and per-key concurrency limits.
        api_keys: accepted API keys; none means no auth.
        public_paths: paths that need no key even when keys are set.
        cors_origins: origins allowed to call from browsers (CORS is off when empty).
        keepalive_seconds: idle time before an SSE keep-alive is sent.
        playground: serve the playground page at `/`.
        resume: make OpenAI and Anthropic SSE streams resumable (off when None).
    """
    host = BackendHost(backend)
    router = build_router(
        host,
        middlewares=middlewares,
        dialects=dialects,
        transports=transports,
        limits=limits,
        api_keys=api_keys,
        public_paths=public_paths,
        keepalive_seconds=keepalive_seconds,
        playground=playground,
        resume=resume,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with host.running():
            yield

    middleware = []
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["*"],
                expose_headers=["x-request-id"],
            )
        )
    app = Starlette(routes=[_Everything(router)], lifespan=lifespan, middleware=middleware)
    app.state.tokenwire_host = host
    return app


class _Everything(BaseRoute):
    """Hands every request to tokenwire's router (which applies the auth gate first)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return Match.FULL, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class TokenwireMiddleware:
    """ASGI middleware form: answers tokenwire's routes and passes everything else to `app`.

    Takes the same keyword arguments as `create_app` but CORS, which the host app owns; the
    playground is off unless asked for, as `/` belongs to the host app. The backend runs for the duration of the wrapped app's lifespan, or starts on the first
    request when there is none.
    """

    def __init__(self, app: ASGIApp, *, backend: Backend, **options: Any) -> None:
        self.app = app
        self.host = BackendHost(backend)
        options.setdefault("playground", False)
        self.router = build_router(self.host, default=app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            async with self.host.running():
                await self.app(scope, receive, send)
            return
        await self.router(scope, receive, send)
