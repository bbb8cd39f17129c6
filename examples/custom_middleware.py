"""A custom stream middleware: masks a word in everything the model says.

    create_app(backend, middlewares=[partial(RedactMiddleware, word="Paris")])

or publish it under the `tokenwire.middlewares` entry-point group and pass
`--middleware redact`. A word split across two deltas is still caught: the tail that
could start the word is held back until the next delta decides.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from tokenwire import Event, Generate, GenerationRequest, TokenDelta


class RedactMiddleware:
    def __init__(self, app: Generate, *, word: str = "secret", mask: str = "█") -> None:
        self.app, self.word, self.mask = app, word, mask * len(word)

    async def __call__(self, request: GenerationRequest) -> AsyncIterator[Event]:
        held = ""
        async with aclosing(self.app(request)) as events:  # type: ignore[type-var]
            async for event in events:
                if not isinstance(event, TokenDelta):
                    if held:  # the stream is ending: nothing more can complete the word
                        yield TokenDelta(held)
                        held = ""
                    yield event
                    continue
                text = (held + event.text).replace(self.word, self.mask)
                keep = next(
                    (n for n in range(len(self.word) - 1, 0, -1) if text.endswith(self.word[:n])), 0
                )
                text, held = text[: len(text) - keep], text[len(text) - keep :]
                if text:
                    yield TokenDelta(text, event.token_ids, event.logprobs)
