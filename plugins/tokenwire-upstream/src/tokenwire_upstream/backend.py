"""`upstream`: a backend that streams from an OpenAI-compatible server over HTTP."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import cast

import anyio
import httpx

from tokenwire import Event, Finish, GenerationError, GenerationRequest, TokenDelta, Usage
from tokenwire_upstream._errors import MAX_ERROR_BODY_BYTES, error_from_status, error_from_transport
from tokenwire_upstream._openai import UpstreamStreamError, finish_reason, parse_chunk
from tokenwire_upstream._request import SERVER_KINDS, ServerKind, request_body
from tokenwire_upstream._sse import SSEDecoder
from tokenwire_upstream._tool_calls import ToolCallSequencer

logger = logging.getLogger("tokenwire.upstream")

API_KEY_ENV = "TOKENWIRE_UPSTREAM_API_KEY"
DRAIN_SECONDS = 1.0
"""How long to wait after [DONE] for the body's end before dropping the connection."""


class UpstreamBackend:
    """Streams each request from an OpenAI-compatible server (vLLM, llama.cpp, tokenwire).

    Chat requests go to `/v1/chat/completions`, prompt requests to `/v1/completions`, both
    with `stream: true`; tokenwire's dialects, transports and middlewares sit in front.

    Args:
        base_url: the upstream's root, e.g. `http://vllm:8000` (a trailing `/v1` is fine).
        model: the model name the upstream serves; also ours unless `served_model` is set.
        served_model: the model id clients ask us for, when it differs from `model`.
        api_key: sent as `Authorization: Bearer`; defaults to $TOKENWIRE_UPSTREAM_API_KEY.
        timeout: seconds to connect, and to wait for each chunk of a stream.
        max_connections: concurrent upstream requests; more wait (up to `timeout`) and
            then get 429.
        check: on start, ask `/v1/models` and fail startup if the upstream is unreachable.
        server: what the upstream is, for the fields without a common spelling:
            "generic" (any OpenAI-compatible server), "vllm" (adds regex and grammar
            constraints) or "openai" (reasoning as `reasoning_effort`).
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        served_model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_connections: int = 100,
        check: bool = True,
        server: str = "generic",
    ) -> None:
        url = httpx.URL(str(base_url))
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ValueError(f"max_connections must be an integer, got {max_connections!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if server not in SERVER_KINDS:
            raise ValueError(f"server must be one of {', '.join(SERVER_KINDS)}, got {server!r}")
        self.server: ServerKind = server
        # Our paths start with /v1, so a base URL copied from an OpenAI SDK config works too.
        path = url.path.rstrip("/")
        path = path.removesuffix("/v1")
        self.base_url = url.copy_with(path=path or "/")
        self.model = str(model)
        self.model_id = str(served_model) if served_model is not None else self.model
        self.timeout = float(timeout)
        self.max_connections = max_connections
        self.check = bool(check)
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._api_key = str(key) if key else None
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        # Never the key; the URL without any user:password it may carry.
        shown = self.base_url.copy_with(username=None, password=None)
        return f"UpstreamBackend(base_url={str(shown)!r}, model={self.model!r})"

    async def start(self) -> None:
        headers = {"accept": "text/event-stream"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(self.timeout),
            # Keep every connection alive: a pooled connection saves a TCP handshake on the
            # time to first token of the next request.
            limits=httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            ),
        )
        if self.check:
            await self._check_upstream(self._client)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        client = self._client
        if client is None:
            raise GenerationError("The upstream backend is not started.")
        path, body = request_body(request, self.model, self.server)
        streaming = False
        try:
            # Leaving this block — a normal end, an error, or the consumer closing us on a
            # client disconnect — closes the response, which drops the upstream connection
            # mid-body, so the upstream stops generating.
            async with client.stream(
                "POST", path, json=body, headers={"x-request-id": request.request_id}
            ) as response:
                if response.status_code >= 400:
                    raise error_from_status(
                        response.status_code,
                        await _read_capped(response),
                        response.headers,
                        request.model,
                    )
                streaming = True
                async with aclosing(self._events(response, request)) as events:
                    async for event in events:
                        yield event
        except httpx.RequestError as exc:
            raise error_from_transport(exc, streaming=streaming) from exc
        except UpstreamStreamError as exc:
            logger.warning(
                "upstream error in stream (request %s): %s", request.request_id, exc.detail
            )
            raise

    async def _events(
        self, response: httpx.Response, request: GenerationRequest
    ) -> AsyncGenerator[Event, None]:
        decoder = SSEDecoder()
        chat = request.is_chat
        sequencer = ToolCallSequencer()
        deltas = 0
        reason: str | None = None
        stop_sequence: str | None = None
        usage: Usage | None = None
        done = False
        # httpx types it as an iterator; it is an async generator, which aclosing closes.
        lines = cast("AsyncGenerator[str, None]", response.aiter_lines())
        async with aclosing(lines):
            async for line in lines:
                sse = decoder.decode(line)
                if sse is None:
                    continue
                if sse.data == "[DONE]":
                    done = True
                    break
                chunk = parse_chunk(sse.data, chat=chat, top_logprobs=request.top_logprobs)
                # A chunk's logprobs cover all its tokens; they go with its answer text when
                # it has both kinds (servers send one kind per chunk).
                logprobs = chunk.logprobs if request.logprobs else None
                if chunk.reasoning:
                    deltas += 1
                    reasoning_logprobs = None if chunk.text else logprobs
                    delta = TokenDelta(
                        chunk.reasoning, logprobs=reasoning_logprobs, channel="reasoning"
                    )
                    for event in sequencer.text(delta):
                        yield event
                if chunk.text:
                    deltas += 1
                    for event in sequencer.text(TokenDelta(chunk.text, logprobs=logprobs)):
                        yield event
                if chunk.tool_calls:
                    deltas += 1
                for fragment in chunk.tool_calls:
                    for event in sequencer.tool_call(fragment):
                        yield event
                if chunk.finish_reason is not None:
                    reason = chunk.finish_reason
                if chunk.stop_reason is not None and chunk.stop_reason in request.stop:
                    stop_sequence = chunk.stop_reason
                if chunk.usage is not None:
                    usage = chunk.usage
            if done:
                # Read on to the body's end (it follows [DONE] at once): a response closed
                # before its end takes its connection down with it, and the next request
                # would pay for a new one in its time to first token.
                with anyio.move_on_after(DRAIN_SECONDS):
                    async for _ in lines:
                        pass
        # The usage chunk follows the one with the finish reason, so the Finish waits for
        # [DONE]. Servers that omit [DONE] still sent a finish reason; a stream with
        # neither was cut off.
        if not done and reason is None:
            raise GenerationError("The upstream server ended the stream before it finished.")
        for event in sequencer.finish():
            yield event
        if usage is None:
            # llama.cpp's Python server never sends usage: count what arrived.
            usage = Usage(completion_tokens=deltas)
        called_tools = sequencer.calls > 0 and stop_sequence is None
        yield Finish(
            finish_reason(reason, called_tools=called_tools), usage, stop_sequence=stop_sequence
        )

    async def _check_upstream(self, client: httpx.AsyncClient) -> None:
        """Fail startup on an unreachable upstream; warn when it does not list our model."""
        try:
            response = await client.get("/v1/models")
        except httpx.TransportError as exc:
            raise RuntimeError(f"upstream {self!r} is unreachable: {exc}") from exc
        if response.status_code != 200:
            logger.warning("upstream GET /v1/models answered HTTP %d", response.status_code)
            return
        try:
            ids = {m.get("id") for m in response.json().get("data", []) if isinstance(m, dict)}
        except (ValueError, AttributeError, TypeError):
            return
        if self.model not in ids:
            # llama.cpp serves any model name, so this is a warning, not a failure.
            logger.warning(
                "upstream does not list model %r (it lists %s)", self.model, sorted(map(str, ids))
            )


async def _read_capped(response: httpx.Response) -> bytes:
    """The start of an error body: enough for its message, never an unbounded read."""
    body = bytearray()
    async for piece in response.aiter_bytes():
        body += piece
        if len(body) >= MAX_ERROR_BODY_BYTES:
            break
    return bytes(body[:MAX_ERROR_BODY_BYTES])
