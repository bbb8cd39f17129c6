"""What the HTTP transports share: reading the body, error responses, and streaming a call."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping

import anyio
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from tokenwire.endpoint import Call, Endpoint, parse_timeout
from tokenwire.errors import RequestTooLargeError, TokenwireError
from tokenwire.interfaces import Payload
from tokenwire.transports._relay import Frame, cancel_on_disconnect, relay


def request_id_of(scope: Scope) -> str:
    state = scope.get("state") or {}
    request_id = state.get("request_id")
    if not isinstance(request_id, str):
        raise RuntimeError("tokenwire routes must be served by create_app (no request id)")
    return request_id


def response_headers(
    scope: Scope, endpoint: Endpoint, extra: Mapping[str, str] = {}
) -> list[tuple[bytes, bytes]]:
    headers = {"x-request-id": request_id_of(scope), **endpoint.extra_headers, **extra}
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def read_body(receive: Receive, limit: int) -> bytes:
    """Read the whole request body, refusing (413) once it grows past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise anyio.get_cancelled_exc_class()()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(f"Request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(
    send: Send, status: int, content: object, headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(scope: Scope, send: Send, endpoint: Endpoint, error: TokenwireError) -> None:
    rendered = endpoint.render_error(error)
    await send_json(
        send,
        rendered.status_code,
        rendered.content,
        response_headers(scope, endpoint, rendered.headers),
    )


async def open_call(
    scope: Scope, receive: Receive, send: Send, endpoint: Endpoint, transport: str
) -> Call | None:
    """Read and parse the request; answer errors and non-streamed calls here.

    Returns the call when the caller should stream it, None when the response is sent.
    """
    try:
        body = await read_body(receive, endpoint.limits.max_body_bytes)
        header = Headers(scope=scope).get("x-request-timeout")
        timeout = None if header is None else parse_timeout(header, "x-request-timeout")
        call = endpoint.start(
            body, scope.get("path_params", {}), request_id_of(scope), transport, timeout
        )
        scope["state"]["request"] = call.request
    except TokenwireError as error:
        await send_error(scope, send, endpoint, error)
        return None
    if call.stream:
        return call
    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_on_disconnect, receive, tg.cancel_scope)
        try:
            content = await call.respond()
        except TokenwireError as error:
            await send_error(scope, send, endpoint, error)
        else:
            await send_json(send, 200, content, response_headers(scope, endpoint))
        tg.cancel_scope.cancel()
    return None


def _observe_first_byte(scope: Scope, endpoint: Endpoint) -> None:
    state = scope.get("state", {})
    request, received_at = state.get("request"), state.get("received_at")
    if request is None or received_at is None:
        return
    elapsed = time.perf_counter() - received_at
    for observe in endpoint.first_byte_observers:
        observe(request, elapsed)


class _HTTPResponse:
    """A chunked HTTP response, as the sink of a relayed stream."""

    __slots__ = ("_endpoint", "_headers", "_scope", "_send")

    def __init__(self, scope: Scope, send: Send, endpoint: Endpoint, media_type: str) -> None:
        self._scope, self._send, self._endpoint = scope, send, endpoint
        self._headers = [
            (b"content-type", media_type.encode()),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *response_headers(scope, endpoint),
        ]

    async def begin(self) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": self._headers})

    async def write(self, body: bytes) -> None:
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b""})

    async def refuse(self, error: TokenwireError) -> None:
        await send_error(self._scope, self._send, self._endpoint, error)


async def stream_payloads(
    payloads: AsyncIterator[tuple[int, Payload]],
    scope: Scope,
    receive: Receive,
    send: Send,
    endpoint: Endpoint,
    *,
    media_type: str,
    frame: Frame,
    keepalive: bytes | None,
) -> None:
    """Stream numbered payloads as one chunked HTTP response (see `relay`).

    A failure before the first token is a real HTTP error; a client disconnect cancels
    everything below.
    """
    await relay(
        payloads,
        endpoint,
        _HTTPResponse(scope, send, endpoint, media_type),
        frame=frame,
        keepalive=keepalive,
        disconnects=receive,
        on_first_byte=lambda: _observe_first_byte(scope, endpoint),
    )
