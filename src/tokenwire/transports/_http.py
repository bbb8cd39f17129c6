"""What the HTTP transports share: reading the body, error responses, and streaming a call."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import aclosing

import anyio
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from tokenwire.endpoint import Call, Endpoint, parse_timeout
from tokenwire.errors import RequestTooLargeError, TokenwireError
from tokenwire.interfaces import Payload

Frame = Callable[[Payload, int], bytes]
"""Encode one payload, given its 0-based sequence number; b"" leaves it out."""

_PUMP_BUFFER = 32


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


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    # The body is fully read by now, so the next message can only be the disconnect.
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def open_call(
    scope: Scope, receive: Receive, send: Send, endpoint: Endpoint, transport: str
) -> Call | None:
    """Read and parse the request; answer errors and non-streamed calls here.

    Returns the call when the caller should stream it, None when the response is sent.
    """
    try:
        body = await read_body(receive, endpoint.max_body_bytes)
        header = Headers(scope=scope).get("x-request-timeout")
        timeout = None if header is None else parse_timeout(header, "x-request-timeout")
        call = endpoint.start(
            body, scope.get("path_params", {}), request_id_of(scope), transport, timeout
        )
    except TokenwireError as error:
        await send_error(scope, send, endpoint, error)
        return None
    if call.stream:
        return call
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
        try:
            content = await call.respond()
        except TokenwireError as error:
            await send_error(scope, send, endpoint, error)
        else:
            await send_json(send, 200, content, response_headers(scope, endpoint))
        tg.cancel_scope.cancel()
    return None


async def stream_call(
    call: Call,
    scope: Scope,
    receive: Receive,
    send: Send,
    endpoint: Endpoint,
    *,
    media_type: str,
    frame: Frame,
    keepalive: bytes | None,
) -> None:
    """Stream a call's payloads as one chunked HTTP response.

    Headers wait for the first payload, so a failure before the first token is a real
    HTTP error. A client disconnect cancels the task group, and with it everything below.
    """
    headers = [
        (b"content-type", media_type.encode()),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        *response_headers(scope, endpoint),
    ]
    async with aclosing(call.payloads()) as payloads, anyio.create_task_group() as tg:
        tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
        try:
            first = await payloads.__anext__()
        except TokenwireError as error:
            await send_error(scope, send, endpoint, error)
            tg.cancel_scope.cancel()
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": frame(first, 0), "more_body": True})

        # A pump task lets the writer wake up for keep-alives without cancelling the
        # payload generator mid-step (cancelling an async generator's __anext__ kills it).
        sender, receiver = anyio.create_memory_object_stream[Payload](_PUMP_BUFFER)

        async def pump() -> None:
            async with sender:
                async for payload in payloads:
                    await sender.send(payload)

        tg.start_soon(pump)
        sequence = 1
        async with receiver:
            while True:
                try:
                    payload = receiver.receive_nowait()
                except anyio.WouldBlock:
                    with anyio.move_on_after(endpoint.keepalive_seconds) as idle:
                        try:
                            payload = await receiver.receive()
                        except anyio.EndOfStream:
                            break
                    if idle.cancelled_caught:
                        if keepalive:
                            await send(
                                {"type": "http.response.body", "body": keepalive, "more_body": True}
                            )
                        continue
                except anyio.EndOfStream:
                    break
                # Frames already waiting go out in one write: a slow reader gets fewer,
                # larger writes instead of a backlog of tiny ones.
                chunks = [frame(payload, sequence)]
                sequence += 1
                while True:
                    try:
                        payload = receiver.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    chunks.append(frame(payload, sequence))
                    sequence += 1
                await send(
                    {"type": "http.response.body", "body": b"".join(chunks), "more_body": True}
                )
        await send({"type": "http.response.body", "body": b""})
        tg.cancel_scope.cancel()
