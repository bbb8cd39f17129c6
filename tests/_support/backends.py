"""Scripted backends for transport and app tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio

from tokenwire import Event, Finish, GenerationRequest, QueueFullError, TokenDelta, Usage
from tokenwire.events import Progress
from tokenwire.interfaces import LoadSnapshot


class ScriptedBackend:
    """Yields `tokens` with `delay` between them; can fail before or after some tokens.

    Records when its generator was closed, so tests can see cancellation arrive.
    """

    model_id = "scripted"

    def __init__(
        self,
        tokens: list[str],
        *,
        delay: float = 0.0,
        fail_at: int | None = None,
        error: Exception | None = None,
        first_delay: float = 0.0,
    ) -> None:
        self.tokens, self.delay, self.first_delay = tokens, delay, first_delay
        self.fail_at, self.error = fail_at, error or RuntimeError("boom: secret internals")
        self.closed_at: float | None = None
        self.started = 0
        self.finished_normally = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self.started += 1
        try:
            if self.first_delay:
                await anyio.sleep(self.first_delay)
            for index, token in enumerate(self.tokens):
                if index == self.fail_at:
                    raise self.error
                if self.delay and index:
                    await anyio.sleep(self.delay)
                yield TokenDelta(token, (index,))
            if self.fail_at == len(self.tokens):
                raise self.error
            self.finished_normally += 1
            yield Finish("stop", Usage(1, len(self.tokens)))
        finally:
            self.closed_at = anyio.current_time()


def queue_full_backend() -> ScriptedBackend:
    return ScriptedBackend(["x"], fail_at=0, error=QueueFullError("queue is full", retry_after=2.4))


class EventScriptBackend:
    """Yields exactly `events` (they should end with one `Finish`), `delay` apart, and keeps
    the requests it was given, so dialect tests can script tool calls, reasoning and logprobs."""

    model_id = "scripted"

    def __init__(self, events: Sequence[Event], *, delay: float = 0.0) -> None:
        self.events, self.delay = list(events), delay
        self.requests: list[GenerationRequest] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self.requests.append(request)
        for index, event in enumerate(self.events):
            if self.delay and index:
                await anyio.sleep(self.delay)
            yield event


class LoadedBackend(ScriptedBackend):
    """A scripted backend that reports the load snapshot `snapshot` (`ReportsLoad`)."""

    def __init__(self, snapshot: LoadSnapshot, tokens: Sequence[str] = ("a", "b")) -> None:
        super().__init__(list(tokens))
        self.snapshot = snapshot

    def load(self) -> LoadSnapshot:
        return self.snapshot


class QueuedBackend:
    """Accepts each request (`Progress("queued")`), keeps it queued `queued_for` seconds (a
    full batch), prefills it in `prefill_chunks` chunks (one `Progress("prefill")` each, with
    counts), then streams `tokens` — or raises `error` where its first token would be.

    `reject` raises it before anything, as a backend that refuses a request outright does.
    Records whether its generator was closed before the end (the stream was cancelled).
    """

    model_id = "queued"

    def __init__(
        self,
        tokens: list[str],
        *,
        queued_for: float,
        prefill_chunks: int = 0,
        prompt_tokens: int = 40,
        token_delay: float = 0.0,
        error: Exception | None = None,
        reject: Exception | None = None,
    ) -> None:
        self.tokens, self.queued_for, self.token_delay = tokens, queued_for, token_delay
        self.prefill_chunks, self.prompt_tokens = prefill_chunks, prompt_tokens
        self.error, self.reject = error, reject
        self.finished = 0
        self.cancelled = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if self.reject is not None:
            raise self.reject
        done = False
        try:
            yield Progress("queued")
            await anyio.sleep(self.queued_for)
            for chunk in range(1, self.prefill_chunks + 1):
                total = self.prompt_tokens
                yield Progress("prefill", total, done=total * chunk // self.prefill_chunks)
            if self.error is not None:
                raise self.error
            for index, token in enumerate(self.tokens):
                if self.token_delay and index:
                    await anyio.sleep(self.token_delay)
                yield TokenDelta(token, (index,))
            done = True
            self.finished += 1
            yield Finish("stop", Usage(self.prompt_tokens, len(self.tokens)))
        finally:
            if not done and self.error is None:
                self.cancelled += 1
