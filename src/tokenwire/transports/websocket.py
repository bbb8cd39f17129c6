"""WebSocket on the same path as the HTTP route: JSON frames both ways.

The client sends a request body as a text frame; the server answers with one text frame per
payload (the JSON an SSE `data:` line would carry, `[DONE]` included for OpenAI dialects).
`{"type": "cancel"}` stops the running request, which ends with `{"type": "cancelled"}`.
Requests on one socket run one after another.
"""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from starlette.types import Receive, Scope, Send

from tokenwire.endpoint import Endpoint
from tokenwire.errors import TokenwireError
from tokenwire.requests import new_request_id


def _is_cancel(text: str) -> bool:
    if '"cancel"' not in text:  # cheap filter: request bodies are far more common
        return False
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "cancel"


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
        inbox_sender, inbox = anyio.create_memory_object_stream[str](16)
        running: list[anyio.CancelScope] = []

        async def read_frames(
            outer: anyio.CancelScope, sender: MemoryObjectSendStream[str]
        ) -> None:
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
                        for scope_ in running:
                            scope_.cancel()
                        continue
                    await sender.send(text)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_frames, tg.cancel_scope, inbox_sender)
            async with inbox:
                async for text in inbox:
                    with anyio.CancelScope() as call_scope:
                        running.append(call_scope)
                        try:
                            await self._serve_one(text, scope, send, endpoint)
                        finally:
                            running.remove(call_scope)
                    if call_scope.cancelled_caught:
                        await _send_json(send, {"type": "cancelled"})
            tg.cancel_scope.cancel()

    async def _serve_one(self, text: str, scope: Scope, send: Send, endpoint: Endpoint) -> None:
        request_id = new_request_id()
        try:
            call = endpoint.start(text, scope.get("path_params", {}), request_id, self.name)
            if not call.stream:
                await _send_json(send, await call.respond())
                return
            async with aclosing(call.payloads()) as payloads:
                async for payload in payloads:
                    await send({"type": "websocket.send", "text": payload.data})
        except TokenwireError as error:
            await _send_json(send, endpoint.render_error(error).content)


async def _send_json(send: Send, content: Any) -> None:
    await send({"type": "websocket.send", "text": json.dumps(content, ensure_ascii=False)})
