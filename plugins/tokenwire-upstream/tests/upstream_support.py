"""Servers for the upstream tests: real uvicorn on loopback, a scripted backend, a raw HTTP peer.

Copied in small rather than imported from tokenwire's own tests package, so this plugin's
tests run wherever the plugin is installed.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import anyio
import uvicorn
from anyio.abc import SocketAttribute, SocketStream
from starlette.types import ASGIApp

from tokenwire import Event, Finish, GenerationRequest, TokenDelta, Usage


@contextmanager
def running_server(app: ASGIApp, *, timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread until the block ends; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited before it started")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


class ScriptedBackend:
    """Yields `tokens` with `delay` between them; may raise `error` before token `fail_at`.

    Records when its generator was closed and whether it ran to its end, so a test can see
    a cancellation arrive from the far side of a proxy.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        *,
        delay: float = 0.0,
        fail_at: int | None = None,
        error: Exception | None = None,
        model: str = "scripted",
    ) -> None:
        self.model_id = model
        self.tokens, self.delay = list(tokens), delay
        self.fail_at, self.error = fail_at, error or RuntimeError("boom: secret internals")
        self.started = 0
        self.finished_normally = 0
        self.closed = threading.Event()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self.started += 1
        try:
            for index, token in enumerate(self.tokens):
                if index == self.fail_at:
                    raise self.error
                if self.delay and index:
                    await anyio.sleep(self.delay)
                yield TokenDelta(token, (index,))
            self.finished_normally += 1
            yield Finish("stop", Usage(1, len(self.tokens)))
        finally:
            self.closed.set()


@dataclass(slots=True)
class RawPeer:
    """A hand-written HTTP/1.1 server: answers every request with `response`, then closes.

    `bodies` collects the JSON request bodies it received, in order.
    """

    response: bytes
    url: str = ""
    bodies: list[dict[str, object]] = field(default_factory=list)

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive()
            head, _, body = head.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                body += await stream.receive()
            if length:
                self.bodies.append(json.loads(body))
            await stream.send(self.response)


@asynccontextmanager
async def raw_peer(response: bytes) -> AsyncIterator[RawPeer]:
    """Run a `RawPeer` on 127.0.0.1 in the current event loop for the block's duration."""
    peer = RawPeer(response)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    peer.url = f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, peer.handle)
        try:
            yield peer
        finally:
            group.cancel_scope.cancel()
    await listener.aclose()


def sse_response(payloads: Sequence[object], *, chunked_and_cut: bool = False) -> bytes:
    """An SSE answer carrying `payloads` as `data:` lines (strings verbatim, others as JSON).

    With `chunked_and_cut` the body is chunked and the final chunk never comes: the
    connection drops mid-body, as when an upstream process dies.
    """
    events = b"".join(
        b"data: " + (p if isinstance(p, str) else json.dumps(p)).encode() + b"\n\n"
        for p in payloads
    )
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    if chunked_and_cut:
        return (
            head + b"transfer-encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(events), events)
        )
    return head + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(events) + events


def chat_chunk(content: str | None = None, finish_reason: str | None = None) -> dict[str, object]:
    delta = {} if content is None else {"content": content}
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
