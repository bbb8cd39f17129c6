"""What the HTTP transports share: reading the body, error responses, and streaming a call."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping

import anyio
from anyio.abc import TaskGroup
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from tokenwire.endpoint import Call, Endpoint, closing, parse_timeout
from tokenwire.errors import RequestTooLargeError, TokenwireError
from tokenwire.interfaces import Payload
from tokenwire.transports._backpressure import EventFeed, FrameBuffer, SendBuffers

Frame = Callable[[Payload, int], bytes]
"""Encode one payload, given its 0-based sequence number; b"" leaves it out."""

logger = logging.getLogger("tokenwire")


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
        scope["state"]["request"] = call.request
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


class NumberedPayloads:
    """A call's payloads with their 0-based sequence numbers (the SSE ids).

    Keeps the call, so that `stream_payloads` can put an `EventFeed` under it. Counts in
    `__anext__` rather than through another async generator: every token passes here.
    """

    __slots__ = ("_payloads", "_sequence", "call")

    def __init__(self, call: Call) -> None:
        self.call = call
        self._payloads: AsyncGenerator[Payload, None] | None = None
        self._sequence = 0

    def __aiter__(self) -> NumberedPayloads:
        return self

    async def __anext__(self) -> tuple[int, Payload]:
        if self._payloads is None:
            self._payloads = self.call.payloads()
        payload = await self._payloads.__anext__()
        sequence = self._sequence
        self._sequence = sequence + 1
        return sequence, payload

    async def aclose(self) -> None:
        if self._payloads is not None:
            await self._payloads.aclose()


def _observe_first_byte(scope: Scope, endpoint: Endpoint) -> None:
    state = scope.get("state", {})
    request, received_at = state.get("request"), state.get("received_at")
    if request is None or received_at is None:
        return
    elapsed = time.perf_counter() - received_at
    for observe in endpoint.first_byte_observers:
        observe(request, elapsed)


def numbered(call: Call) -> NumberedPayloads:
    """A call's payloads with their 0-based sequence numbers (the SSE ids)."""
    return NumberedPayloads(call)


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
    A client that reads too slowly is met with the endpoint's slow-client policy (see
    `_backpressure`): its deltas coalesce, or a write that waits past the send timeout
    ends the stream as a disconnect would.
    """
    headers = [
        (b"content-type", media_type.encode()),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        *response_headers(scope, endpoint),
    ]
    limits = endpoint.limits
    frames = FrameBuffer(limits.send_buffer_bytes, endpoint.send_buffers or SendBuffers())
    feed: EventFeed | None = None
    if limits.slow_client_policy == "coalesce" and isinstance(payloads, NumberedPayloads):
        # Merging happens on events, under the dialect: the call reads them from the feed,
        # which reads the pipeline (and is closed below, after the tasks that pull it).
        call = payloads.call
        feed = EventFeed(frames, call.generate(call.request))
        call.generate = feed.events
    timeout = limits.send_timeout_seconds if limits.slow_client_policy == "disconnect" else None
    last_write = anyio.current_time()

    async def write(body: bytes, tg: TaskGroup) -> bool:
        """Send one chunk; False when the client took too long and the stream was ended."""
        nonlocal last_write
        frames.sending_started()
        try:
            if timeout is None:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            else:
                with anyio.move_on_after(timeout) as waited:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                if waited.cancelled_caught:
                    logger.warning(
                        "client read nothing for %.1f s; ending the stream (slow client policy "
                        "'disconnect')",
                        timeout,
                    )
                    tg.cancel_scope.cancel()
                    return False
        finally:
            frames.sending = False
        last_write = anyio.current_time()
        return True

    try:
        async with closing(payloads), anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
            if feed is not None:
                feed.task_group = tg
            try:
                first = await payloads.__anext__()
            except TokenwireError as error:
                await send_error(scope, send, endpoint, error)
                tg.cancel_scope.cancel()
                return
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if not await write(frame(first[1], first[0]), tg):
                return
            _observe_first_byte(scope, endpoint)

            async def pump() -> None:
                # A separate task renders the payloads, so the writer below can send
                # whatever is waiting in one write while the client is slow.
                try:
                    async for item in payloads:
                        chunk = frame(item[1], item[0])
                        if chunk and not frames.offer(chunk):
                            await frames.put(chunk)
                finally:
                    frames.close()

            async def keep_alive(chunk: bytes, interval: float) -> None:
                while True:
                    await anyio.sleep(max(0.0, last_write + interval - anyio.current_time()))
                    # A write in flight means the client is slow, not that the stream is idle.
                    if not frames.sending and anyio.current_time() - last_write >= interval:
                        await write(chunk, tg)

            tg.start_soon(pump)
            if keepalive:
                tg.start_soon(keep_alive, keepalive, endpoint.keepalive_seconds)
            while (body := await frames.take()) is not None:
                sent = await write(body, tg)
                frames.sent(len(body))
                if not sent:
                    return
            await send({"type": "http.response.body", "body": b""})
            tg.cancel_scope.cancel()
    finally:
        frames.discard()
        if feed is not None:
            feed.discard()
            async with closing(feed.source):
                pass
