"""Slow clients against a real uvicorn server: bounded buffers, coalescing, disconnecting.

Loopback hides backpressure (the kernel buffers megabytes per connection), so a stalled
reader here shrinks its receive buffer before connecting and then reads nothing.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.sync.client import connect
from websockets.uri import parse_uri

from tests._support.backends import ScriptedBackend
from tests._support.server import running_server
from tokenwire import Event, Finish, GenerationRequest, TokenDelta, Usage
from tokenwire.dialects.openai_chat import OpenAIChatDialect
from tokenwire.endpoint import Endpoint, Transport
from tokenwire.interfaces import Generate
from tokenwire.limits import Limits
from tokenwire.middlewares.metrics import MetricsMiddleware
from tokenwire.requests import new_request_id
from tokenwire.send_buffers import SendBuffers
from tokenwire.transports.ndjson import NDJSONTransport
from tokenwire.transports.sse import SSETransport
from tokenwire.transports.websocket import WebSocketTransport

pytestmark = pytest.mark.anyio

PATH = "/v1/chat/completions"
BUFFER = 16 * 1024
SNDBUF = 16 * 1024  # the kernel then holds ~32 KiB per connection (see running_server)


def transport_app(endpoint: Endpoint):  # type: ignore[no-untyped-def]
    """The transports alone over one endpoint, as the app routes a request to them."""
    transports: list[Transport] = [NDJSONTransport(), SSETransport(), WebSocketTransport()]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        scope.setdefault("state", {})["request_id"] = new_request_id()
        transport = next(t for t in transports if t.accepts(scope))
        await transport(scope, receive, send, endpoint)

    return app


def endpoint_for(generate: Generate, limits: Limits, buffers: SendBuffers) -> Endpoint:
    return Endpoint(OpenAIChatDialect(), generate, "m", limits=limits, send_buffers=buffers)


def body(words: int = 0) -> bytes:
    return json.dumps(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    ).encode()


@contextmanager
def stalled_reader(url: str) -> Iterator[socket.socket]:
    """A client that sends a streamed request, then reads nothing with a ~4 KiB window."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.connect((host, int(port)))
    payload = body()
    sock.sendall(
        f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    try:
        yield sock
    finally:
        sock.close()


def read_all(sock: socket.socket, timeout: float = 30.0) -> bytes:
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if b"0\r\n\r\n" in chunks[-1][-16:]:
            return b"".join(chunks)


def deltas_of(raw: bytes) -> list[str]:
    texts = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data: {"):
            choices = json.loads(line[6:]).get("choices")
            content = choices[0]["delta"].get("content") if choices else None
            if content:
                texts.append(content)
    return texts


class PeakBuffers(SendBuffers):
    """Send buffers that remember the most they ever held.

    Recorded in `add`, where every change to the count happens (on the server's thread),
    rather than sampled from another thread: a sampler started after the stream has run
    to its end never sees the bytes arrive (uvloop rounds the backend's 0.5 ms sleeps down
    to 0 ms timers, so 2000 tokens take a few milliseconds).
    """

    def __init__(self) -> None:
        super().__init__()
        self.peak = 0

    def add(self, size: int) -> None:
        super().add(size)
        self.peak = max(self.peak, self.bytes)


async def healthy_stream(client: httpx.AsyncClient) -> tuple[str, float]:
    """Read one stream as it comes; returns its text and the largest gap between deltas."""
    text, gaps, last = [], [0.0], None
    async with client.stream("POST", PATH, content=body()) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                now = time.perf_counter()
                if last is not None:
                    gaps.append(now - last)
                last = now
                text.extend(deltas_of(line.encode()))
    return "".join(text), max(gaps)


def words(n: int) -> list[str]:
    return [f" w{i}" for i in range(n)]


async def test_a_client_that_keeps_up_gets_one_delta_per_token() -> None:
    tokens = words(300)
    backend = ScriptedBackend(tokens)
    endpoint = endpoint_for(backend.generate, Limits(send_buffer_bytes=BUFFER), SendBuffers())
    with running_server(transport_app(endpoint), send_buffer=SNDBUF) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post(PATH, content=body())
    assert deltas_of(response.content) == tokens


async def test_stalled_readers_do_not_slow_other_streams() -> None:
    backend = ScriptedBackend(words(400), delay=0.005)
    endpoint = endpoint_for(backend.generate, Limits(send_buffer_bytes=BUFFER), SendBuffers())
    results: list[tuple[str, float]] = []
    with (
        running_server(transport_app(endpoint), send_buffer=SNDBUF) as url,
        ExitStack() as stack,
    ):
        for _ in range(10):
            stack.enter_context(stalled_reader(url))
        await anyio.sleep(0.5)  # let the stalled streams fill their buffers
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def run() -> None:
                results.append(await healthy_stream(client))

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(run)
    assert len(results) == 4
    for text, max_gap in results:
        assert text == "".join(words(400))
        assert max_gap < 1.0


class Disconnecting:
    """A long, fast stream behind the metrics middleware, under the 'disconnect' policy."""

    def __init__(self) -> None:
        self.backend = ScriptedBackend(words(20000), delay=0.0002)
        self.registry = CollectorRegistry()
        metrics = MetricsMiddleware(self.backend.generate, registry=self.registry)
        self.buffers = SendBuffers(self.registry)
        limits = Limits(
            send_buffer_bytes=BUFFER, slow_client_policy="disconnect", send_timeout_seconds=0.5
        )
        self.endpoint = endpoint_for(metrics, limits, self.buffers)

    def disconnects(self, transport: str) -> float | None:
        return self.registry.get_sample_value(
            "tokenwire_cancellations_total",
            {"model": "m", "dialect": "openai-chat", "transport": transport, "phase": "decode",
             "reason": "disconnect"},
        )  # fmt: skip


async def test_disconnect_policy_ends_a_stalled_stream_after_the_send_timeout() -> None:
    case = Disconnecting()
    app = transport_app(case.endpoint)
    with running_server(app, send_buffer=SNDBUF) as url, stalled_reader(url):
        with anyio.fail_after(20):
            while case.backend.closed_at is None:  # noqa: ASYNC110 - another thread's state
                await anyio.sleep(0.05)
        await anyio.sleep(0.1)
    assert case.backend.finished_normally == 0  # the backend generator was closed mid-stream
    assert case.disconnects("sse") == 1
    assert case.buffers.bytes == 0
    assert case.registry.get_sample_value("tokenwire_stream_buffered_bytes") == 0


async def test_disconnect_policy_leaves_a_reading_client_alone() -> None:
    backend = ScriptedBackend(words(500), delay=0.001)
    limits = Limits(
        send_buffer_bytes=BUFFER, slow_client_policy="disconnect", send_timeout_seconds=0.5
    )
    endpoint = endpoint_for(backend.generate, limits, SendBuffers())
    with running_server(transport_app(endpoint), send_buffer=SNDBUF) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            text, _ = await healthy_stream(client)
    assert text == "".join(words(500))
    assert backend.finished_normally == 1


async def test_coalescing_keeps_an_error_after_the_first_token_in_band() -> None:
    async def failing(request: GenerationRequest) -> AsyncIterator[Event]:
        for word in words(2000):
            yield TokenDelta(word)
        raise RuntimeError("boom: secret internals")
        yield Finish("stop", Usage())  # pragma: no cover

    endpoint = endpoint_for(failing, Limits(send_buffer_bytes=BUFFER), SendBuffers())
    with (
        running_server(transport_app(endpoint), send_buffer=SNDBUF) as url,
        stalled_reader(url) as sock,
    ):
        await anyio.sleep(0.5)
        raw = await anyio.to_thread.run_sync(read_all, sock)
    assert b'"error"' in raw
    assert b"secret" not in raw
    assert "".join(deltas_of(raw)) == "".join(words(2000))


# WebSocket: the same policies, one message per payload.


@contextmanager
def stalled_websocket(url: str) -> Iterator[tuple[socket.socket, ClientProtocol]]:
    """A WebSocket client that sends one streamed request, then reads nothing (~4 KiB window).

    The handshake and frames come from websockets' sans-I/O client, over a plain socket
    whose receive window is set before connecting.
    """
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    protocol = ClientProtocol(parse_uri(f"ws://{host}:{port}{PATH}"))
    protocol.send_request(protocol.connect())
    sock.sendall(b"".join(protocol.data_to_send()))
    sock.settimeout(10)
    while protocol.handshake_exc is None and not protocol.events_received():
        protocol.receive_data(sock.recv(4096))
    assert protocol.handshake_exc is None, protocol.handshake_exc
    protocol.send_text(body())
    sock.sendall(b"".join(protocol.data_to_send()))
    try:
        yield sock, protocol
    finally:
        sock.close()


def read_messages(
    sock: socket.socket, protocol: ClientProtocol, timeout: float = 30.0
) -> list[str]:
    """Every text message until the OpenAI stream's `[DONE]` or the connection's end."""
    sock.settimeout(timeout)
    messages: list[str] = []
    while True:
        data = sock.recv(65536)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        for event in protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                messages.append(bytes(event.data).decode())
        if not data or (messages and messages[-1] == "[DONE]"):
            return messages


def websocket_deltas(messages: list[str]) -> list[str]:
    return deltas_of("\n".join(f"data: {m}" for m in messages).encode())


@contextmanager
def stalled_client(url: str, transport: str) -> Iterator[Callable[[], list[str]]]:
    """A client of `transport` that stops reading; yields what reads the rest (its deltas)."""
    if transport == "sse":
        with stalled_reader(url) as sock:
            yield lambda: deltas_of(read_all(sock))
    else:
        with stalled_websocket(url) as (sock, protocol):
            yield lambda: websocket_deltas(read_messages(sock, protocol))


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_coalesce_bounds_a_stalled_readers_buffer_and_merges_its_deltas(
    transport: str,
) -> None:
    tokens = words(2000)
    backend = ScriptedBackend(tokens, delay=0.0005)
    buffers = PeakBuffers()
    endpoint = endpoint_for(backend.generate, Limits(send_buffer_bytes=BUFFER), buffers)
    with (
        running_server(transport_app(endpoint), send_buffer=SNDBUF) as url,
        stalled_client(url, transport) as read_deltas,
    ):
        # The backend runs to its end although the client reads nothing: the feed pulls it.
        with anyio.fail_after(20):
            while backend.finished_normally == 0:  # noqa: ASYNC110 - another thread's state
                await anyio.sleep(0.05)
        texts = await anyio.to_thread.run_sync(read_deltas)
    # The stall reached the server's own buffer (else this test proves nothing) ...
    assert buffers.peak >= BUFFER
    # ... which stayed bounded: framed bytes plus merged text, each about one buffer.
    assert buffers.peak <= 2 * BUFFER + 1024
    assert "".join(texts) == "".join(tokens)
    assert len(texts) < len(tokens) // 2  # fewer, larger deltas
    assert buffers.bytes == 0


async def test_websocket_client_that_keeps_up_gets_one_message_per_token() -> None:
    tokens = words(300)
    backend = ScriptedBackend(tokens)
    endpoint = endpoint_for(backend.generate, Limits(send_buffer_bytes=BUFFER), SendBuffers())

    def converse(url: str) -> list[str]:
        with connect(url.replace("http://", "ws://") + PATH) as websocket:
            websocket.send(body().decode())
            messages: list[str] = []
            while not messages or messages[-1] != "[DONE]":
                message = websocket.recv(timeout=10)
                assert isinstance(message, str)
                messages.append(message)
            return messages

    with running_server(transport_app(endpoint), send_buffer=SNDBUF) as url:
        messages = await anyio.to_thread.run_sync(converse, url)
    assert websocket_deltas(messages) == tokens
    assert all(json.loads(m) for m in messages[:-1])  # one JSON document per message


async def test_websocket_disconnect_policy_ends_a_stalled_stream_after_the_send_timeout() -> None:
    case = Disconnecting()
    with (
        running_server(transport_app(case.endpoint), send_buffer=SNDBUF) as url,
        stalled_websocket(url) as (sock, protocol),
    ):
        with anyio.fail_after(20):
            while case.backend.closed_at is None:  # noqa: ASYNC110 - another thread's state
                await anyio.sleep(0.05)
        # The server ended the connection: reading now reaches its end, not [DONE].
        messages = await anyio.to_thread.run_sync(read_messages, sock, protocol)
    assert case.backend.finished_normally == 0
    assert messages and messages[-1] != "[DONE]"
    assert case.disconnects("websocket") == 1
    assert case.buffers.bytes == 0
