"""A streamed call as one chunked HTTP response (SSE and NDJSON frame it differently)."""

from __future__ import annotations

import time

from starlette.types import Receive, Scope, Send

from tokenwire.endpoint import Endpoint
from tokenwire.errors import TokenwireError
from tokenwire.stream_start import StreamStart
from tokenwire.transports._relay import Frame, Source, relay
from tokenwire.transports._replies import response_headers, send_error


class _HTTPResponse:
    """A chunked HTTP response, as the sink of a relayed stream."""

    __slots__ = ("_endpoint", "_headers", "_scope", "_send")

    def __init__(self, scope: Scope, send: Send, endpoint: Endpoint, media_type: str) -> None:
        self._scope, self._send, self._endpoint = scope, send, endpoint
        self._headers = [
            (b"content-type", media_type.encode()),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *response_headers(scope),
        ]

    async def begin(self) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": self._headers})

    async def write(self, body: bytes) -> None:
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b""})

    async def refuse(self, error: TokenwireError) -> None:
        await send_error(self._scope, self._send, self._endpoint, error)


def _observe_first_byte(scope: Scope, endpoint: Endpoint) -> None:
    state = scope.get("state", {})
    request, received_at = state.get("request"), state.get("received_at")
    if request is None or received_at is None:
        return
    elapsed = time.perf_counter() - received_at
    for observe in endpoint.first_byte_observers:
        observe(request, elapsed)


async def stream_chunked(
    source: Source,
    scope: Scope,
    receive: Receive,
    send: Send,
    endpoint: Endpoint,
    *,
    media_type: str,
    frame: Frame,
    keepalive: bytes | None,
    start: StreamStart | None = None,
) -> None:
    """Stream a call's (or a resumed stream's) numbered payloads as one chunked HTTP response
    (see `relay`). A failure before the response starts is a real HTTP error; a client
    disconnect cancels everything below."""
    await relay(
        source,
        endpoint,
        _HTTPResponse(scope, send, endpoint, media_type),
        frame=frame,
        keepalive=keepalive,
        disconnects=receive,
        on_first_byte=lambda: _observe_first_byte(scope, endpoint),
        start=start,
    )
