"""Scripted backends for transport and app tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio

from tokenwire import Event, Finish, GenerationRequest, QueueFullError, TokenDelta, Usage
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
