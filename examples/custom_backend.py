"""A complete custom backend: streams the user's words back in reverse order.

Publish it under the `tokenwire.backends` entry-point group in your package:

    [project.entry-points."tokenwire.backends"]
    reverse = "custom_backend:ReverseBackend"

then `tokenwire serve --backend reverse`. A backend is any class with these four members;
nothing from tokenwire needs subclassing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio

from tokenwire import Event, Finish, GenerationRequest, TokenDelta, Usage


class ReverseBackend:
    def __init__(self, *, model: str = "reverse", delay: float = 0.0) -> None:
        self.model_id = model
        self.delay = delay

    async def start(self) -> None:  # load weights, open sessions, start loops here
        pass

    async def close(self) -> None:
        pass

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if request.messages is not None:
            text = request.messages[-1].content
        else:
            text = request.prompt or ""
        words = text.split()[::-1]
        limit = len(words) if request.max_tokens is None else request.max_tokens
        for index, word in enumerate(words[:limit]):
            await anyio.sleep(self.delay)  # a real model computes here; cancellation lands here
            yield TokenDelta(word if index == 0 else f" {word}")
        reason = "length" if limit < len(words) else "stop"
        yield Finish(
            reason, Usage(prompt_tokens=len(words), completion_tokens=min(limit, len(words)))
        )
