"""An HTTP request becomes a `Call`: its body read within the limit, parsed by the endpoint,
and, when the client did not ask for a stream, answered whole. A background call is handed
to the endpoint's detached runner: answered at once, or streamed from what it writes."""

from __future__ import annotations

from typing import cast

import anyio
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from tokenwire.endpoint import Call, Endpoint
from tokenwire.errors import InvalidRequestError, RequestTooLargeError, TokenwireError
from tokenwire.interfaces import RunsDetached, SettlesWrites
from tokenwire.request_body import parse_timeout
from tokenwire.transports._relay import Source, cancel_on_disconnect
from tokenwire.transports._replies import request_id_of, response_headers, send_error, send_json


def wants_progress(scope: Scope) -> bool:
    """Whether the client asked for progress payloads before the first token
    (`x-tokenwire-progress: 1`)."""
    return Headers(scope=scope).get("x-tokenwire-progress", "").strip().lower() in ("1", "true")


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


def start_detached(call: Call, endpoint: Endpoint) -> Source:
    """Run a background call apart from its connection; returns its payloads' reader.

    Raises:
        TokenwireError: this endpoint runs nothing in the background, or cannot now.
    """
    if endpoint.detached is None:
        raise InvalidRequestError(
            "Invalid value for 'background': not served here.", param="background"
        )
    return endpoint.detached.run_detached(call)


async def open_call(
    scope: Scope, receive: Receive, send: Send, endpoint: Endpoint, transport: str
) -> Source | None:
    """Read and parse the request; answer errors and non-streamed calls here.

    Returns what the caller should stream (the call, or a background call's reader), None
    when the response is sent.
    """
    try:
        body = await read_body(receive, endpoint.limits.max_body_bytes)
        header = Headers(scope=scope).get("x-request-timeout")
        timeout = None if header is None else parse_timeout(header, "x-request-timeout")
        call = await endpoint.open(
            body, scope.get("path_params", {}), request_id_of(scope), transport, timeout
        )
        scope["state"]["request"] = call.request
        call.progress = wants_progress(scope)
        reader = start_detached(call, endpoint) if call.background else None
        if reader is not None and isinstance(call.exchange, SettlesWrites):
            await call.exchange.settle()  # stored as queued: retrievable on every replica
    except TokenwireError as error:
        await send_error(scope, send, endpoint, error)
        return None
    if reader is not None:
        if call.stream:
            return reader
        scope["state"]["transport"] = "json"
        # Read before the runner's first step: the response as created, "queued".
        reply = cast(RunsDetached, call.exchange).snapshot()
        await send_json(send, 200, reply, response_headers(scope))
        return None
    if call.stream:
        return call
    # A whole JSON reply: the access log says so rather than naming the streaming transport.
    scope["state"]["transport"] = "json"
    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_on_disconnect, receive, tg.cancel_scope)
        try:
            content = await call.respond()
        except TokenwireError as error:
            await send_error(scope, send, endpoint, error)
        else:
            await send_json(send, 200, content, response_headers(scope))
        tg.cancel_scope.cancel()
    return None
