"""An endpoint joins one dialect to the pipeline: bytes in, a `Call` whose payloads stream out.

Also home of the `Transport` contract, since a transport is handed an endpoint: it reads the
body, asks the endpoint for a `Call`, and frames the call's payloads on its connection.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from tokenwire.completion import CompletionBuilder
from tokenwire.errors import (
    GenerationError,
    InvalidRequestError,
    RateLimitError,
    TokenwireError,
    as_tokenwire_error,
)
from tokenwire.events import Event, Finish, Progress
from tokenwire.interfaces import (
    Dialect,
    ErrorBody,
    Exchange,
    Generate,
    ObservesProgress,
    Payload,
    PrefetchesReferences,
    RunsDetached,
    SettlesWrites,
)
from tokenwire.limits import Limits
from tokenwire.pipeline import closing
from tokenwire.request_body import decode_body, parse_timeout
from tokenwire.requests import GenerationRequest
from tokenwire.send_buffers import SendBuffers
from tokenwire.stream_start import StreamStart

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

logger = logging.getLogger("tokenwire")


@dataclass(slots=True)
class Call:
    """One accepted request: its exchange (dialect state) and the pipeline it runs through.

    `start` is shared with the transport until the first payload (see `StreamStart`);
    `progress` is True when the client asked for progress payloads before the first token.
    `body` and `path_params` are what it was parsed from (a replica that continues the stream
    after its owner died parses them again).
    """

    exchange: Exchange
    generate: Generate
    request: GenerationRequest
    start: StreamStart = field(default_factory=StreamStart)
    progress: bool = False
    body: bytes | str = b""
    path_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def stream(self) -> bool:
        return self.exchange.stream

    @property
    def background(self) -> bool:
        """Whether the client asked it to run apart from its connection (`RunsDetached`)."""
        exchange = self.exchange
        return isinstance(exchange, RunsDetached) and exchange.background

    async def payloads(
        self,
        events: AsyncIterator[Event] | None = None,
        observe: Callable[[Event], None] | None = None,
    ) -> AsyncGenerator[Payload, None]:
        """The dialect's payloads for this call, rendered from `events` (by default the
        pipeline's stream for the request; a transport may pass that stream through a feed
        of its own, e.g. to merge deltas for a slow client).

        The first backend event is awaited before anything is yielded, so a failure before
        the first token raises (and becomes a real HTTP error) — unless the transport
        committed to the response early (`StreamStart.commit`) or a progress payload went
        out; a failure after that becomes the dialect's in-band error payloads and ends the
        stream cleanly.

        `observe`, when given, sees every event (progress ones included) before it is
        rendered, once the previous event's payloads were taken (failover's `Recorder`):
        cheaper than wrapping `events` in another generator.
        """
        exchange = self.exchange
        start = self.start
        if events is None:
            events = self.generate(self.request)
        sent_progress = False
        async with closing(events):
            observer = exchange if isinstance(exchange, ObservesProgress) else None
            error: TokenwireError | None = None
            try:
                first = await events.__anext__()
                if observe is not None:
                    observe(first)
                while isinstance(first, Progress):
                    start.admit()
                    if observer is not None:
                        observer.observe_progress(first)
                    if self.progress:
                        sent_progress = True
                        yield progress_payload(first)
                    first = await events.__anext__()
                    if observe is not None:
                        observe(first)
            except StopAsyncIteration:
                error = _no_finish(self.request)
            except Exception as exc:
                error = _log_failure(self.request, exc)
            if error is not None:
                if not sent_progress and not start.fail_early():
                    raise error
                failed = exchange.fail(error)
                await self._settle()
                for payload in failed:
                    yield payload
                return
            opened = exchange.open()
            rendered = exchange.render(first)
            finished = isinstance(first, Finish)
            if finished:
                await self._settle()
            for payload in opened:
                yield payload
            for payload in rendered:
                yield payload
            try:
                while not finished:
                    try:
                        event = await events.__anext__()
                    except StopAsyncIteration:
                        raise _no_finish(self.request) from None
                    if observe is not None:
                        observe(event)
                    if isinstance(event, Progress):
                        continue
                    finished = isinstance(event, Finish)
                    rendered = exchange.render(event)
                    if finished:
                        await self._settle()
                    for payload in rendered:
                        yield payload
            except Exception as exc:
                failed = exchange.fail(_log_failure(self.request, exc))
                await self._settle()
                for payload in failed:
                    yield payload

    async def _settle(self) -> None:
        """Wait for what the exchange's last render wrote elsewhere (`SettlesWrites`)."""
        if isinstance(self.exchange, SettlesWrites):
            await self.exchange.settle()

    async def respond(self) -> Mapping[str, Any]:
        """Run the call to its end and render the whole (non-streamed) response."""
        gathered = CompletionBuilder()
        async with closing(self.generate(self.request)) as events:
            try:
                async for event in events:
                    if isinstance(event, Finish):
                        response = self.exchange.respond(gathered.build(event))
                        await self._settle()
                        return response
                    gathered.add(event)
            except Exception as exc:
                raise _log_failure(self.request, exc) from exc
        raise _no_finish(self.request)


PROGRESS_EVENT = "progress"


def progress_payload(progress: Progress) -> Payload:
    """The payload a client that asked for progress gets for `progress` (any dialect):
    `{"type": "progress", "phase": ..., "done": ..., "total": ...}` (counts when known)."""
    document: dict[str, object] = {"type": "progress", "phase": progress.phase}
    if progress.done is not None:
        document["done"] = progress.done
    if progress.prompt_tokens is not None:
        document["total"] = progress.prompt_tokens
    return Payload(json.dumps(document, separators=(",", ":")), event=PROGRESS_EVENT)


def _no_finish(request: GenerationRequest) -> TokenwireError:
    logger.error("stream ended without a Finish event", extra={"request_id": request.request_id})
    return GenerationError("The generation stream ended unexpectedly.")


def _log_failure(request: GenerationRequest, exc: Exception) -> TokenwireError:
    error = as_tokenwire_error(exc)
    if error is not exc:
        logger.error(
            "generation failed (request %s)",
            request.request_id,
            exc_info=exc,
            extra={"request_id": request.request_id},
        )
    return error


@dataclass(slots=True)
class Endpoint:
    """One dialect's entry into the pipeline, shared by every transport."""

    dialect: Dialect
    generate: Generate
    model_id: str
    limits: Limits = Limits()
    keepalive_seconds: float = 15.0
    # Seconds an admitted request may wait for its first payload before the response starts
    # with headers and keep-alives (0: at admission; None: never, headers wait for the first
    # payload). See `tokenwire.stream_start`.
    early_headers_after: float | None = 1.0
    # Middlewares that time the first response byte (`ObservesFirstByte`).
    first_byte_observers: tuple[Callable[[GenerationRequest, float], None], ...] = ()
    # Bytes held for slow clients, shared by an app's endpoints (the buffered-bytes gauge).
    send_buffers: SendBuffers | None = None
    # Runs background calls apart from their connection; None refuses them.
    detached: DetachedRunner | None = None

    def start(
        self,
        body: bytes | str,
        path_params: Mapping[str, str],
        request_id: str,
        transport: str = "",
        timeout: float | None = None,
    ) -> Call:
        """Parse a request body into a `Call`.

        `timeout` (seconds, e.g. from an `x-request-timeout` header) and a top-level
        `"timeout"` body field set the request's deadline; the smaller one wins.

        Raises:
            TokenwireError: the body is too large, not JSON, or not valid for the dialect.
        """
        return self._start(body, self.decode(body), path_params, request_id, transport, timeout)

    async def open(
        self,
        body: bytes | str,
        path_params: Mapping[str, str],
        request_id: str,
        transport: str = "",
        timeout_seconds: float | None = None,
    ) -> Call:
        """`start`, after the dialect brought in what the request names that is kept
        elsewhere (`PrefetchesReferences`: a stored response on another replica).

        Raises:
            TokenwireError: as `start`.
        """
        document = self.decode(body)
        if isinstance(self.dialect, PrefetchesReferences):
            await self.dialect.prefetch(document)
        return self._start(body, document, path_params, request_id, transport, timeout_seconds)

    def _start(
        self,
        body: bytes | str,
        document: dict[str, Any],
        path_params: Mapping[str, str],
        request_id: str,
        transport: str,
        timeout: float | None,
    ) -> Call:
        limits = self.limits
        try:
            exchange = self.dialect.parse(document, path_params, request_id, self.model_id)
        except RecursionError:
            raise InvalidRequestError("Request body is nested too deeply.") from None
        body_timeout = document.get("timeout")
        if body_timeout is not None:
            timeout = min(parse_timeout(body_timeout, "timeout"), timeout or math.inf)
        deadline = None if timeout is None else anyio.current_time() + timeout
        max_tokens = exchange.request.max_tokens
        if (
            limits.max_tokens is not None
            and max_tokens is not None
            and max_tokens > limits.max_tokens
        ):
            raise InvalidRequestError(
                f"The request asks for {max_tokens} tokens; this server allows at most "
                f"{limits.max_tokens}.",
                param="max_tokens",
            )
        request = replace(
            exchange.request,
            dialect=self.dialect.name,
            transport=transport,
            deadline=deadline,
            # A budget, not the client's ask: the backend cuts it to the room the prompt
            # leaves instead of refusing the request.
            default_max_tokens=limits.max_tokens,
        )
        return Call(exchange, self.generate, request, body=body, path_params=dict(path_params))

    def decode(self, body: bytes | str) -> dict[str, Any]:
        """A request body as the JSON object it must be (`request_body.decode_body`)."""
        return decode_body(body, self.limits.max_body_bytes)

    def render_error(self, error: TokenwireError) -> ErrorBody:
        body = self.dialect.render_error(error)
        if isinstance(error, RateLimitError):
            headers = {**body.headers, "retry-after": str(max(1, round(error.retry_after)))}
            return ErrorBody(body.status_code, body.content, headers)
        return body


class DetachedRunner(Protocol):
    """Runs calls apart from their connection (background responses) and reads them back."""

    def run_detached(self, call: Call) -> AsyncIterator[tuple[int, Payload]]:
        """Start `call` in a task of its own; returns a reader of its numbered payloads.

        Raises:
            TokenwireError: it cannot run detached now (no task group, store full).
        """
        ...


class Transport(Protocol):
    """Frames payloads on one kind of connection and owns it: it notices the client leaving
    and cancels the stream it reads."""

    name: str

    def accepts(self, scope: Scope) -> bool: ...

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint
    ) -> None: ...
