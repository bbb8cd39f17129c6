"""The API-key gate in front of tokenwire's routes, refusing in the owning dialect's shape."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenwire.auth import ApiKeys
from tokenwire.endpoint import Endpoint
from tokenwire.errors import AuthenticationError
from tokenwire.transports._replies import send_json


def route_path(scope: Scope) -> str:
    """The path below the app's mount point, as Starlette's routes match it.

    `path` loses `root_path` only where `root_path` ends on a segment boundary of it: under
    "/llm", "/llm/health/live" is "/health/live" and "/llm" is "", but "/llmx" stays whole.
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    if path[len(root_path)] == "/":
        return path[len(root_path) :]
    return path


class AuthGate:
    """Checks API keys before any non-public tokenwire route; other paths pass through.

    A refusal is a 401 in the shape of the dialect that owns the path (OpenAI's otherwise).
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: ApiKeys,
        routes: Sequence[BaseRoute],
        dialect_routes: Sequence[tuple[BaseRoute, Endpoint]],
        public_paths: Iterable[str],
        fallback: Endpoint,
    ) -> None:
        self.app, self.keys, self.routes = app, keys, routes
        self.dialect_routes, self.fallback = dialect_routes, fallback
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.keys.enabled:
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        owned = any(route.matches(scope)[0] != Match.NONE for route in self.routes)
        if not owned or path in self.public_paths:
            await self.app(scope, receive, send)
            return
        try:
            scope.setdefault("state", {})["api_key"] = self.keys.authenticate(scope)
        except AuthenticationError as error:
            await self._refuse(scope, send, error)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, error: AuthenticationError) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})
            return
        endpoint = next(
            (e for route, e in self.dialect_routes if route.matches(scope)[0] != Match.NONE),
            self.fallback,
        )
        body = endpoint.render_error(error)
        headers = [(b"www-authenticate", b"Bearer")]
        await send_json(send, body.status_code, body.content, headers)
