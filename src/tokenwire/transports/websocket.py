"""WebSocket on the same path as the HTTP route: JSON frames both ways.

The client sends a request body as a text frame; the server answers with one text frame per
payload (the JSON an SSE `data:` line would carry, `[DONE]` included for OpenAI dialects).
`{"type": "cancel"}` stops the request sent before it, queued or running, which then ends
with `{"type": "cancelled"}`; `{"type": "response.cancel"}` is the same for clients of the
Responses API's WebSocket mode, whose requests are `{"type": "response.create", ...}`
(background responses are refused here, as that API refuses them over WebSocket). Requests
on one socket run one after another. While a request waits (queued before its first payload,
or idle) the server sends `{"type": "keepalive"}`: ASGI has no way to send a WebSocket ping
frame. An `x-tokenwire-progress: 1` header on the upgrade asks for progress messages on every
request of the socket.

A slow reader meets the endpoint's slow-client policy as HTTP streams do (see `_relay`):
its deltas coalesce into fewer messages, or, with "disconnect", a send that waits past
the send timeout ends the request and closes the connection.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from starlette.types import Receive, Scope, Send

from tokenwire.endpoint import Endpoint
from tokenwire.errors import InvalidRequestError, TokenwireError
from tokenwire.interfaces import Payload
from tokenwire.requests import new_request_id
from tokenwire.transports._calls import wants_progress
from tokenwire.transports._relay import relay

# Frames wait in the stream's buffer joined; NUL, which JSON text never holds, parts them.
_END = b"\x00"
_KEEPALIVE = b'{"type":"keepalive"}' + _END


def _frame(payload: Payload, sequence: int) -> bytes:
    return payload.data.encode() + _END


class _Messages:
    """A WebSocket's text messages, one per payload, as the sink of a relayed stream."""

    __slots__ = ("_endpoint", "_send")

    def __init__(self, send: Send, endpoint: Endpoint) -> None:
        self._send, self._endpoint = send, endpoint

    async def begin(self) -> None:
        return None

    async def write(self, body: bytes) -> None:
        for frame in body.split(_END)[:-1]:
            await self._send({"type": "websocket.send", "text": frame.decode()})

    async def end(self) -> None:
        return None

    async def refuse(self, error: TokenwireError) -> None:
        await _send_json(self._send, self._endpoint.render_error(error).content)


_CANCELS = ("cancel", "response.cancel")


def _is_cancel(text: str) -> bool:
    if 'cancel"' not in text:  # cheap filter: request bodies are far more common
        return False
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") in _CANCELS


class WebSocketTransport:
    name = "websocket"

    def accepts(self, scope: Scope) -> bool:
        return bool(scope["type"] == "websocket")

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint
    ) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        # Each request carries its own scope from the moment it is read, so a cancel right
        # behind it reaches it even before the serving loop has taken it from the inbox.
        inbox_sender, inbox = anyio.create_memory_object_stream[tuple[str, anyio.CancelScope]](16)
        latest: anyio.CancelScope | None = None

        async def read_frames(
            outer: anyio.CancelScope, sender: MemoryObjectSendStream[tuple[str, anyio.CancelScope]]
        ) -> None:
            nonlocal latest
            async with sender:
                while True:
                    message = await receive()
                    if message["type"] == "websocket.disconnect":
                        outer.cancel()
                        return
                    text = message.get("text")
                    if text is None and message.get("bytes") is not None:
                        text = message["bytes"].decode("utf-8", "replace")
                    if text is None:
                        continue
                    if _is_cancel(text):
                        if latest is not None:
                            latest.cancel()
                        continue
                    latest = anyio.CancelScope()
                    await sender.send((text, latest))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_frames, tg.cancel_scope, inbox_sender)
            async with inbox:
                async for text, call_scope in inbox:
                    kept_up = True
                    with call_scope:
                        kept_up = await self._serve_one(text, scope, send, endpoint)
                    if call_scope.cancelled_caught:
                        await _send_json(send, {"type": "cancelled"})
                    elif not kept_up:
                        # Its send is stuck, so no close frame could go out either: the
                        # connection just ends, as an HTTP stream's does.
                        break
            tg.cancel_scope.cancel()

    async def _serve_one(self, text: str, scope: Scope, send: Send, endpoint: Endpoint) -> bool:
        """Answer one request; False when the slow-client policy ended it."""
        request_id = new_request_id()
        try:
            call = await endpoint.open(text, scope.get("path_params", {}), request_id, self.name)
            if call.background:
                raise InvalidRequestError(
                    "Invalid value for 'background': not supported over WebSocket; send the "
                    "request over HTTP.",
                    param="background",
                )
            if not call.stream:
                await _send_json(send, await call.respond())
                return True
        except TokenwireError as error:
            await _send_json(send, endpoint.render_error(error).content)
            return True
        call.progress = wants_progress(scope)
        return await relay(
            call, endpoint, _Messages(send, endpoint), frame=_frame, keepalive=_KEEPALIVE
        )


async def _send_json(send: Send, content: Any) -> None:
    await send({"type": "websocket.send", "text": json.dumps(content, ensure_ascii=False)})
