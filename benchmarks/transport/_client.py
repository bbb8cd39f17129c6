"""A lean streaming client: raw HTTP/1.1 over anyio sockets, chunked decoding, SSE lines.

httpx and the SDKs cost more per event than the servers under test, so they would hide the
differences this benchmark looks for. This client parses only what it must: the status
line, chunked framing and SSE lines, counting `data:` payloads that carry a content delta.
With `verify=True` it also decodes every payload as JSON and returns the streamed text.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from anyio.abc import SocketStream

from benchmarks.transport._payloads import PATH

# Content deltas, not the opening role chunk (`{"role":"assistant","content":""}`) nor
# the finish chunk (`"delta":{}`).
_CONTENT_DELTA = b'"delta":{"content":'
_READ_SIZE = 256 * 1024

Receive = Callable[[], Awaitable[bytes]]
Send = Callable[[bytes], Awaitable[None]]


class ResponseError(Exception):
    """The server answered something other than a well-formed streamed 200."""


@dataclass(frozen=True, slots=True)
class StreamCount:
    """What one streamed response delivered."""

    tokens: int
    done: bool
    text: str | None = None


def build_request(port: int, body: bytes) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class SSEConnection:
    """One keep-alive HTTP/1.1 connection streaming one chat completion at a time."""

    def __init__(self, receive: Receive, send: Send, request: bytes) -> None:
        self._receive = receive
        self._send = send
        self._request = request
        self._buffer = bytearray()

    @classmethod
    async def open(cls, port: int, body: bytes) -> tuple[SSEConnection, SocketStream]:
        stream = await anyio.connect_tcp("127.0.0.1", port)

        async def receive() -> bytes:
            return await stream.receive(_READ_SIZE)

        return cls(receive, stream.send, build_request(port, body)), stream

    async def _fill(self) -> None:
        data = await self._receive()
        if not data:
            raise ResponseError("connection closed mid-response")
        self._buffer += data

    async def _line(self) -> bytes:
        buffer = self._buffer
        while (end := buffer.find(b"\r\n")) < 0:
            await self._fill()
        line = bytes(buffer[:end])
        del buffer[: end + 2]  # bytearray deletes from the front in O(1)
        return line

    async def stream_chat(self, *, verify: bool = False) -> StreamCount:
        """Send the request and read the whole streamed response."""
        await self._send(self._request)
        buffer = self._buffer
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            await self._fill()
        head = bytes(buffer[:end]).lower()
        del buffer[: end + 4]
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise ResponseError(f"unexpected status line {status!r}")
        if b"\r\ntransfer-encoding: chunked" not in head:
            raise ResponseError("expected a chunked response")

        tokens = 0
        done = False
        texts: list[str] = []
        partial = b""  # an SSE line split across chunks
        while True:
            size = int((await self._line()).split(b";", 1)[0], 16)
            if size == 0:
                while await self._line():  # trailers end with an empty line
                    pass
                break
            while len(buffer) < size + 2:
                await self._fill()
            lines = (partial + buffer[:size]).split(b"\n")
            del buffer[: size + 2]
            partial = lines.pop()
            for line in lines:
                if not line.startswith(b"data:"):
                    continue
                if _CONTENT_DELTA in line:
                    tokens += 1
                    if verify:
                        texts.append(_content(line))
                elif line.rstrip(b"\r") == b"data: [DONE]":
                    done = True
        if partial:
            raise ResponseError(f"stream ended inside a line: {partial[:80]!r}")
        return StreamCount(tokens, done, "".join(texts) if verify else None)


def _content(line: bytes) -> str:
    document = json.loads(line[5:])
    text: str = document["choices"][0]["delta"]["content"]
    return text
