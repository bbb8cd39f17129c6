"""Chunked HTTP with one JSON payload per line (`application/x-ndjson`), flushed per token."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from tokenwire.endpoint import Endpoint
from tokenwire.interfaces import Payload
from tokenwire.transports._calls import open_call
from tokenwire.transports._chunked import stream_chunked

MEDIA_TYPE = "application/x-ndjson"
# Sent while the stream is idle, also before the first payload (see `relay`): no dialect's
# payload has this shape, so clients skip it as they skip any line they do not know.
KEEPALIVE_LINE = b'{"type":"keepalive"}\n'


def frame_line(payload: Payload, sequence: int) -> bytes:
    # End markers such as "[DONE]" are not JSON: the end of the body says the same.
    if payload.sentinel:
        return b""
    return payload.data.encode() + b"\n"


class NDJSONTransport:
    """Chosen when the client sends `Accept: application/x-ndjson`."""

    name = "ndjson"

    def accepts(self, scope: Scope) -> bool:
        return bool(scope["type"] == "http") and MEDIA_TYPE in Headers(scope=scope).get(
            "accept", ""
        )

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint
    ) -> None:
        call = await open_call(scope, receive, send, endpoint, self.name)
        if call is None:
            return
        await stream_chunked(
            call,
            scope,
            receive,
            send,
            endpoint,
            media_type=MEDIA_TYPE,
            frame=frame_line,
            keepalive=KEEPALIVE_LINE,
        )
