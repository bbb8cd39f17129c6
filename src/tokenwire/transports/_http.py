"""What the HTTP transports share: reading the body, error responses, and streaming a call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing

import anyio
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from tokenwire.endpoint import Call, Endpoint, closing, parse_timeout
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
        body = await read_body(receive, endpoint.limits.max_body_bytes)
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


async def numbered(call: Call) -> AsyncIterator[tuple[int, Payload]]:
    """A call's payloads with their 0-based sequence numbers (the SSE ids)."""
    sequence = 0
    async with aclosing(call.payloads()) as payloads:
        async for payload in payloads:
            yield sequence, payload
            sequence += 1


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
    """Stream numbered payloads as one chunked HTTP response.

    Headers wait for the first payload, so a failure before the first token is a real
    HTTP error. A client disconnect cancels the task group, and with it everything below.
    """
    headers = [
        (b"content-type", media_type.encode()),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        *response_headers(scope, endpoint),
    ]
    async with closing(payloads), anyio.create_task_group() as tg:
        tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
        try:
            first = await payloads.__anext__()
        except TokenwireError as error:
            await send_error(scope, send, endpoint, error)
            tg.cancel_scope.cancel()
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": frame(first[1], first[0]), "more_body": True}
        )

        sender, receiver = anyio.create_memory_object_stream[tuple[int, Payload]](_PUMP_BUFFER)
        last_write = anyio.current_time()

        async def pump() -> None:
            # A separate task reads the payloads, so the writer below can batch whatever
            # is waiting; send_nowait doesn't yield, so a fast producer fills the buffer.
            async with sender:
                async for item in payloads:
                    try:
                        sender.send_nowait(item)
                    except anyio.WouldBlock:
                        await sender.send(item)

        async def keep_alive(chunk: bytes, interval: float) -> None:
            nonlocal last_write
            while True:
                await anyio.sleep(max(0.0, last_write + interval - anyio.current_time()))
                if anyio.current_time() - last_write >= interval:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    last_write = anyio.current_time()

        tg.start_soon(pump)
        if keepalive:
            tg.start_soon(keep_alive, keepalive, endpoint.keepalive_seconds)
        async with receiver:
            async for item in receiver:
                # Frames already waiting go out in one write: a slow reader gets fewer,
                # larger writes instead of a backlog of tiny ones.
                chunks = [frame(item[1], item[0])]
                while True:
                    try:
                        item = receiver.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    chunks.append(frame(item[1], item[0]))
                await send(
                    {"type": "http.response.body", "body": b"".join(chunks), "more_body": True}
                )
                last_write = anyio.current_time()
        await send({"type": "http.response.body", "body": b""})
        tg.cancel_scope.cancel()
