"""`build_router`: tokenwire's routes — dialects, health, models, middleware and resume routes —
behind the access log and the API-key gate. `create_app` and `TokenwireMiddleware` serve it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenwire._auth_gate import AuthGate
from tokenwire.access_log import AccessLog
from tokenwire.auth import ApiKeys, ConcurrencyLimit
from tokenwire.count_route import CountRoute
from tokenwire.dialect_route import DialectRoute
from tokenwire.dialects.openai_chat import OpenAIChatDialect
from tokenwire.dialects.openai_responses import OpenAIResponsesDialect
from tokenwire.endpoint import Endpoint, Transport
from tokenwire.errors import (
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    TokenwireError,
)
from tokenwire.host import BackendHost
from tokenwire.interfaces import (
    CancelsById,
    Dialect,
    ExportsMetrics,
    HoldsCache,
    MiddlewareFactory,
    ObservesFirstByte,
    ObservesLoad,
    ReportsLoad,
    ServesRoutes,
    ServesTokenCounts,
)
from tokenwire.limits import Limits
from tokenwire.middlewares.tool_calls import ToolCallParserMiddleware
from tokenwire.openapi import openapi_routes
from tokenwire.pipeline import build_layers
from tokenwire.plugins import load_plugin
from tokenwire.response_routes import ResponseRoutes
from tokenwire.send_buffers import SendBuffers
from tokenwire.stores.response_store import MemoryResponseStore, ResponseStore, ResponseStoreConfig
from tokenwire.stores.stream_store import ResumeConfig
from tokenwire.transports._replies import send_error
from tokenwire.transports._resume import build_resume_service
from tokenwire.transports.resumable_sse import ResumableSSETransport
from tokenwire.transports.sse import SSETransport

DEFAULT_DIALECTS = (
    "openai-chat",
    "openai-completions",
    "openai-responses",
    "anthropic",
    "gemini",
)
# First match wins: SSE takes any HTTP request, so it goes last.
DEFAULT_TRANSPORTS = ("websocket", "ndjson", "sse")
# Open even when API keys are on: probes, scrapers and the playground page.
DEFAULT_PUBLIC_PATHS = (
    "/health",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/",
    "/openapi.json",
)


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


def _with_tool_call_parser(
    backend: object, middlewares: Sequence[MiddlewareFactory | str]
) -> list[MiddlewareFactory]:
    """The middleware factories, with a tool-call parser innermost when the backend writes
    tool calls as markup (it declares `tool_call_format`) and none is configured already."""
    factories = [_middleware(item) for item in middlewares]
    markup = getattr(backend, "tool_call_format", None)
    if markup is None or any(_parses_tool_calls(factory) for factory in factories):
        return factories
    return [*factories, partial(ToolCallParserMiddleware, format=markup)]


def _parses_tool_calls(factory: MiddlewareFactory) -> bool:
    while isinstance(factory, partial):
        factory = factory.func
    return isinstance(factory, type) and issubclass(factory, ToolCallParserMiddleware)


def _with_store(dialect: Dialect, store: ResponseStore | None) -> Dialect:
    """The Responses dialect keeps its responses in the app's store unless given its own."""
    if isinstance(dialect, OpenAIResponsesDialect) and dialect.store is None and store is not None:
        return OpenAIResponsesDialect(store=store)
    return dialect


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
    early_headers_after: float | None = 1.0,
    playground: bool = True,
    resume: ResumeConfig | None = None,
    responses: ResponseStoreConfig | None = ResponseStoreConfig(),
    default: ASGIApp | None = None,
) -> ASGIApp:
    """tokenwire's routes behind its access log and auth gate.

    `default` answers paths that are not tokenwire's (a 404 in OpenAI's error shape when None).
    """
    backend = host.backend
    layers = build_layers(backend.generate, _with_tool_call_parser(backend, middlewares))
    # Typed as objects: a capability is looked for with isinstance, never assumed.
    middleware_layers: list[object] = list(layers[:-1])
    # What middlewares offer beside their stream, each through a declared capability.
    middleware_routes = [
        route
        for layer in middleware_layers
        if isinstance(layer, ServesRoutes)
        for route in layer.routes
    ]
    first_byte_observers = tuple(
        layer.observe_first_byte
        for layer in middleware_layers
        if isinstance(layer, ObservesFirstByte)
    )
    send_buffers = SendBuffers()
    for layer in middleware_layers:
        if isinstance(layer, ExportsMetrics):
            send_buffers.register(layer.metrics_registry)
    # Load gauges are read at scrape time from whoever knows them: the backend (its queue,
    # batch and KV) and the middlewares that hold caches. The metrics middleware imports
    # neither; it is handed them here.
    caches = [layer for layer in middleware_layers if isinstance(layer, HoldsCache)]
    load = backend if isinstance(backend, ReportsLoad) else None
    for layer in middleware_layers:
        if isinstance(layer, ObservesLoad):
            layer.observe_load(backend.model_id, load, caches)
    pipeline = host.guard(layers[0])

    transport_list: list[Transport] = [_load("transports", t) for t in transports]
    resumable: ResumableSSETransport | None = None
    # One stream store for every replay: resumed SSE streams and background responses (in
    # this process, or shared through Redis when resume names a store).
    service = build_resume_service(lambda: host.task_group, resume or ResumeConfig())
    response_store: ResponseStore | None = None if responses is None else responses.memory_store()
    if isinstance(response_store, MemoryResponseStore) and resume and resume.store is not None:
        # Stored responses follow the streams: shared through the same Redis, so any replica
        # retrieves, continues or deletes them (the client is imported only then).
        from tokenwire.stores.redis_response_store import shared_response_store

        response_store = shared_response_store(resume.store, response_store, service.errors.count)
    if resume is not None:
        for layer in middleware_layers:
            if isinstance(layer, CancelsById):
                service.cancel_handlers.append(layer.cancel_here)
                if service.shared:
                    layer.reach_replicas(service.cancel)
            if isinstance(layer, ExportsMetrics):
                service.register_metrics(layer.metrics_registry)
        transport_list = [
            ResumableSSETransport(service, t) if isinstance(t, SSETransport) else t
            for t in transport_list
        ]
        resumable = next((t for t in transport_list if isinstance(t, ResumableSSETransport)), None)
    concurrency = ConcurrencyLimit(limits.max_concurrent_per_key)

    def endpoint_for(dialect: Dialect) -> Endpoint:
        return Endpoint(
            dialect,
            pipeline,
            backend.model_id,
            limits=limits,
            keepalive_seconds=keepalive_seconds,
            early_headers_after=early_headers_after,
            first_byte_observers=first_byte_observers,
            send_buffers=send_buffers,
            detached=service,
        )

    loaded = [_with_store(_load("dialects", i), response_store) for i in dialects]
    endpoints = {d.name: endpoint_for(d) for d in loaded}
    if service.failover is not None and resume is not None:
        # A replica continues streams whose owner died, through the same pipeline.
        service.failover.serve(endpoints, backend)
    # Errors of routes that belong to no dialect (404s, /v1/models) speak the first one's
    # language, OpenAI's by default.
    fallback = next(iter(endpoints.values()), None) or endpoint_for(OpenAIChatDialect())

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
        asked = request.path_params["model_id"]
        if asked != backend.model_id:
            return _error_response(
                fallback,
                NotFoundError(
                    f"The model {asked[:100]!r} does not exist; "
                    f"this server serves {backend.model_id!r}.",
                    param="model",
                ),
            )
        return JSONResponse(model_card())

    routes: list[BaseRoute] = [
        Route("/health", ready, methods=["GET"]),  # what load tools probe (guidellm)
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
    for endpoint in endpoints.values():
        # Token counts first: a dialect's stream paths may match them too (Gemini's).
        if isinstance(endpoint.dialect, ServesTokenCounts):
            count_app = CountRoute(endpoint, endpoint.dialect, host)
            for path in endpoint.dialect.count_routes:
                counted = Route(path, count_app)
                routes.append(counted)
                dialect_routes.append((counted, endpoint))
    for endpoint in endpoints.values():
        route_app = DialectRoute(endpoint, transport_list, host, concurrency)
        for path in endpoint.dialect.routes:
            for route in (Route(path, route_app), WebSocketRoute(path, route_app)):
                routes.append(route)
                dialect_routes.append((route, endpoint))
    paths = {route.path for route in middleware_routes if isinstance(route, Route)}
    routes.extend(
        openapi_routes(
            backend.model_id,
            dialects=list(endpoints),
            limits=limits,
            cancellation="/v1/requests/{request_id}" in paths,
            metrics="/metrics" in paths,
            playground=playground,
            resume=resumable is not None,
            stored_responses=any(
                isinstance(e.dialect, OpenAIResponsesDialect) and e.dialect.store is not None
                for e in endpoints.values()
            ),
            api_keys=bool(api_keys),
        )
    )
    if resumable is not None:
        routes.append(
            Route("/v1/streams/{request_id}", resumable.resume_route(endpoints), methods=["GET"])
        )
    for endpoint in endpoints.values():
        dialect = endpoint.dialect
        if isinstance(dialect, OpenAIResponsesDialect) and dialect.store is not None:
            routes.extend(ResponseRoutes(dialect.store, service, endpoint).routes())
            break

    # A path under a dialect's own prefix that none of its routes matched (e.g. a Gemini
    # model name holding a newline, which a path parameter never matches) is still that
    # dialect's: its 404 speaks its language. Longest prefix first.
    prefixes = sorted(
        ((path.split("{", 1)[0], endpoint) for endpoint in endpoints.values()
         for path in endpoint.dialect.routes if "{" in path),
        key=lambda item: -len(item[0]),
    )  # fmt: skip

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "no such path"})
            return
        path = scope["path"]
        owner = next((e for prefix, e in prefixes if path.startswith(prefix)), fallback)
        error = NotFoundError(f"No route for {scope['method']} {path[:200]}.")
        await send_error(scope, send, owner, error)

    async def routing_error(request: Request, exc: Exception) -> Response:
        """Starlette's own 404/405 (a method a route does not take), in the error shape."""
        assert isinstance(exc, HTTPException)
        kind = {404: NotFoundError, 405: MethodNotAllowedError}.get(
            exc.status_code, InvalidRequestError
        )
        error = kind(exc.detail)
        error.status_code = exc.status_code
        return _error_response(fallback, error, exc.headers)

    app: ASGIApp = ExceptionMiddleware(
        Router(routes=routes, default=not_found), handlers={HTTPException: routing_error}
    )
    keys = ApiKeys(api_keys)
    if keys.enabled:
        app = AuthGate(app, keys, routes, dialect_routes, public_paths, fallback)
    app = AccessLog(app)
    if default is None:
        return app
    return _OwnRoutesOnly(app, routes, default)


def _error_response(
    endpoint: Endpoint, error: TokenwireError, headers: Mapping[str, str] | None = None
) -> Response:
    rendered = endpoint.render_error(error)
    return JSONResponse(
        rendered.content, rendered.status_code, headers={**rendered.headers, **(headers or {})}
    )


class _OwnRoutesOnly:
    """tokenwire's routes go to `app`; every other path to `default` (the host app), untouched."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], default: ASGIApp) -> None:
        self.app, self.routes, self.default = app, routes, default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        owned = scope["type"] in ("http", "websocket") and any(
            route.matches(scope)[0] != Match.NONE for route in self.routes
        )
        await (self.app if owned else self.default)(scope, receive, send)
