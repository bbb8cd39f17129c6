"""`DialectRoute`: the ASGI app behind one dialect's paths. It admits the request (backend
ready, per-key concurrency) and hands it to the first transport that accepts it."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tokenwire.auth import ConcurrencyLimit
from tokenwire.endpoint import Endpoint, Transport
from tokenwire.errors import MethodNotAllowedError, TokenwireError
from tokenwire.host import BackendHost
from tokenwire.transports._replies import response_headers, send_error, send_json


class DialectRoute:
    """Serves one dialect's endpoint over every transport, in order of preference."""

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
            error = MethodNotAllowedError(
                f"{scope['method']} is not allowed here; send the request with POST."
            )
            rendered = self.endpoint.render_error(error)
            headers = response_headers(scope, {**rendered.headers, "allow": "POST"})
            await send_json(send, 405, rendered.content, headers)
            return
        transport = next((t for t in self.transports if t.accepts(scope)), None)
        if transport is None:
            await Response("No transport accepts this request.", status_code=406)(
                scope, receive, send
            )
            return
        scope["state"]["transport"] = transport.name
        key = scope["state"].get("api_key", "")
        try:
            await self.host.ensure_started()
            self.concurrency.acquire(key)
        except TokenwireError as error:
            await self._refuse(scope, send, error)
            return
        try:
            await transport(scope, receive, send, self.endpoint)
        finally:
            self.concurrency.release(key)

    async def _refuse(self, scope: Scope, send: Send, error: TokenwireError) -> None:
        if scope["type"] == "http":
            await send_error(scope, send, self.endpoint, error)
        else:
            # Closing before accepting makes the server answer the upgrade with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})
