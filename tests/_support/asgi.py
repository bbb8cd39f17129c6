"""Drive an ASGI app with scripted `receive`/`send`, recording when each message went out.

httpx's ASGITransport buffers whole bodies; this sees every chunk as the app sends it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.types import ASGIApp, Message


@dataclass
class Recorded:
    messages: list[tuple[float, Message]] = field(default_factory=list)

    @property
    def start(self) -> Message:
        return next(m for _, m in self.messages if m["type"] == "http.response.start")

    @property
    def status(self) -> int:
        return int(self.start["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.start["headers"]}

    @property
    def chunks(self) -> list[bytes]:
        return [m.get("body", b"") for _, m in self.messages if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def completed(self) -> bool:
        last = self.messages[-1][1]
        return last["type"] == "http.response.body" and not last.get("more_body", False)

    def json(self) -> Any:
        return json.loads(self.body)


def http_scope(
    path: str, headers: dict[str, str] | None = None, method: str = "POST"
) -> dict[str, Any]:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *raw],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def call_http(
    app: ASGIApp,
    path: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    disconnect_when: Callable[[Recorded], bool] | None = None,
    disconnect_after: float | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 - a test harness bound, not an API
) -> Recorded:
    """POST `body` (JSON-encoded unless bytes).

    The client disconnects once `disconnect_when(recorded)` holds after a send, or after
    `disconnect_after` seconds.
    """
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    recorded = Recorded()
    disconnect = anyio.Event()
    sent_body = False

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        recorded.messages.append((anyio.current_time(), message))
        if disconnect_when is not None and disconnect_when(recorded):
            disconnect.set()

    async def disconnect_later(delay: float) -> None:
        await anyio.sleep(delay)
        disconnect.set()

    with anyio.fail_after(timeout):
        async with anyio.create_task_group() as tg:
            if disconnect_after is not None:
                tg.start_soon(disconnect_later, disconnect_after)
            await app(http_scope(path, headers), receive, send)
            tg.cancel_scope.cancel()
    return recorded


def sse_events(body: bytes) -> list[dict[str, str]]:
    """Parse an SSE body into events (field → value); comments become {"comment": text}."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        event: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                event["comment"] = value
            elif name == "data" and "data" in event:
                event["data"] += "\n" + value
            else:
                event[name] = value
        events.append(event)
    return events
