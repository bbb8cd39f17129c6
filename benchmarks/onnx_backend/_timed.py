"""A streaming chat client that stamps every token's arrival: TTFT, decode rate, gaps.

Raw HTTP/1.1 over anyio sockets, one connection per request (as most clients do), chunked
or close-delimited bodies. Each `data:` line is decoded as JSON: a non-empty
`choices[0].delta.content` is a token arrival; a `usage` object, when the server sends one,
gives the exact completion token count (a delta may carry several tokens, or none while a
UTF-8 character is incomplete). Works against any OpenAI-compatible server (tokenwire,
llama-cpp-python).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

_READ_SIZE = 64 * 1024
PATH = "/v1/chat/completions"


class StreamError(Exception):
    """The server answered something other than a streamed 200."""


@dataclass(frozen=True, slots=True)
class TimedStream:
    """One streamed completion; times are seconds after the request was sent."""

    arrivals: list[float]
    """When each content delta arrived."""
    completion_tokens: int
    """From the server's usage when sent, else the number of content deltas."""
    text: str
    started: float
    """`time.perf_counter()` when the request was sent."""

    @property
    def ttft(self) -> float:
        return self.arrivals[0]

    @property
    def decode_tokens_per_second(self) -> float:
        """Tokens after the first over the time from the first delta to the last."""
        span = self.arrivals[-1] - self.arrivals[0]
        return (self.completion_tokens - 1) / span if span > 0 else 0.0

    def gaps(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.arrivals)]


def chat_body(
    prompt: str, max_tokens: int, *, model: str = "default", system: str | None = None
) -> bytes:
    """A greedy streamed chat request for `prompt` (usage asked for; servers may ignore it)."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return json.dumps(
        {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()


async def stream_chat(
    port: int,
    body: bytes,
    *,
    host: str = "127.0.0.1",
    on_token: Callable[[float], None] | None = None,
) -> TimedStream:
    """Send one chat request and read its stream to the end, stamping each content delta.

    `on_token` gets each delta's `time.perf_counter()` as it arrives: the only record of a
    stream that is cancelled before it ends.
    """
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    async with await anyio.connect_tcp(host, port) as stream:
        started = time.perf_counter()
        await stream.send(request)
        reader = _BodyReader(stream)
        head = await reader.head()
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise StreamError(f"{status.decode(errors='replace')}: {(await reader.rest())[:300]!r}")
        arrivals: list[float] = []
        texts: list[str] = []
        usage_tokens: int | None = None
        pending = b""
        async for piece in reader.body(chunked=b"transfer-encoding: chunked" in head.lower()):
            clock = time.perf_counter()
            now = clock - started
            lines = (pending + piece).split(b"\n")
            pending = lines.pop()
            for line in lines:
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if not payload or payload == b"[DONE]":
                    continue
                document = json.loads(payload)
                if "error" in document:
                    raise StreamError(f"stream error: {document['error']}")
                usage = document.get("usage")
                if isinstance(usage, dict) and "completion_tokens" in usage:
                    usage_tokens = int(usage["completion_tokens"])
                for choice in document.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        arrivals.append(now)
                        if on_token is not None:
                            on_token(clock)
                        texts.append(content)
    if not arrivals:
        raise StreamError("the stream carried no content")
    tokens = usage_tokens if usage_tokens is not None else len(arrivals)
    return TimedStream(arrivals, tokens, "".join(texts), started)


class _BodyReader:
    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._closed = False

    async def _fill(self) -> bool:
        if self._closed:
            return False
        try:
            data = await self._stream.receive(_READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data = b""
        if not data:
            self._closed = True
            return False
        self._buffer += data
        return True

    async def head(self) -> bytes:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if not await self._fill():
                raise StreamError("connection closed before the response head")
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        return head

    async def rest(self) -> bytes:
        while await self._fill():
            pass
        return bytes(self._buffer)

    async def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if not await self._fill():
                raise StreamError("connection closed mid-response")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    async def body(self, *, chunked: bool):  # type: ignore[no-untyped-def]
        """Yield body pieces as they arrive (de-chunked)."""
        if not chunked:
            while True:
                if self._buffer:
                    yield bytes(self._buffer)
                    self._buffer.clear()
                if not await self._fill():
                    return
        while True:
            size = int((await self._line()).split(b";", 1)[0], 16)
            if size == 0:
                return
            while len(self._buffer) < size + 2:
                if not await self._fill():
                    raise StreamError("connection closed mid-chunk")
            yield bytes(self._buffer[:size])
            del self._buffer[: size + 2]
