"""The three ASGI apps the transport benchmark compares, all streaming the same SSE events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from benchmarks.transport._payloads import PATH, SSEEvent
from tokenwire import create_app
from tokenwire.backends.echo import EchoBackend

SERVERS = ("tokenwire", "raw", "sse-starlette")
"""tokenwire itself; (a) the raw-ASGI floor; (b) sse-starlette, what a user would write."""


def tokenwire_app() -> ASGIApp:
    """The full stack: echo backend (no delay), OpenAI chat dialect, SSE transport."""
    return create_app(EchoBackend())


def raw_emitter_app(events: Sequence[SSEEvent]) -> ASGIApp:
    """The floor: pre-rendered event bytes, one `send` per event, nothing else."""
    wires = [event.wire for event in events]
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ],
    }

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        more_body = True
        while more_body:  # the request body is read (and dropped) as any server must
            message = await receive()
            more_body = message.get("more_body", False)
        await send(start)
        for wire in wires:
            await send({"type": "http.response.body", "body": wire, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def sse_starlette_app(events: Sequence[SSEEvent]) -> ASGIApp:
    """What a user would write instead: an async generator of dicts through sse-starlette.

    The data strings are pre-rendered (no per-token JSON encoding), which flatters this
    baseline; `sep="\\n"` makes its bytes identical to tokenwire's.
    """
    items = [{"id": event.id, "data": event.data} for event in events]

    async def chat(request: Request) -> EventSourceResponse:
        await request.json()

        async def stream() -> AsyncIterator[dict[str, str]]:
            for item in items:
                yield item

        return EventSourceResponse(stream(), sep="\n")

    return Starlette(routes=[Route(PATH, chat, methods=["POST"])])
