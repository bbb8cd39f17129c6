"""`create_app`: the Starlette app that serves a backend through every dialect and transport,
and `TokenwireMiddleware`, the same routes inside an existing ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenwire.endpoint import Transport
from tokenwire.host import BackendHost
from tokenwire.interfaces import Backend, Dialect, MiddlewareFactory
from tokenwire.limits import Limits
from tokenwire.router import (
    DEFAULT_DIALECTS,
    DEFAULT_PUBLIC_PATHS,
    DEFAULT_TRANSPORTS,
    build_router,
)
from tokenwire.stores.response_store import ResponseStoreConfig
from tokenwire.stores.stream_store import ResumeConfig

__all__ = ["DEFAULT_PUBLIC_PATHS", "TokenwireMiddleware", "create_app"]


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
    early_headers_after: float | None = 1.0,
    playground: bool = True,
    resume: ResumeConfig | None = None,
    responses: ResponseStoreConfig | None = ResponseStoreConfig(),
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
        keepalive_seconds: idle time before a keep-alive is sent (SSE comment or the
            dialect's ping, an NDJSON `{"type":"keepalive"}` line, a WebSocket message).
        early_headers_after: seconds a request the backend admitted may wait for its first
            token before the response starts with headers and keep-alives, so proxies keep
            the connection (0: at admission; None: never). A failure after that is in band.
        playground: serve the playground page at `/`.
        resume: make OpenAI and Anthropic SSE streams resumable (off when None).
        responses: how long and how many bytes of Responses-API responses are stored, for
            `GET /v1/responses/{id}`, `previous_response_id` and `background` (off when None).
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
        early_headers_after=early_headers_after,
        playground=playground,
        resume=resume,
        responses=responses,
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
