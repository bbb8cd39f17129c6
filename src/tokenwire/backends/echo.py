"""`echo`: streams the last user message (or the prompt) back, one word per token.

Deterministic and model-free: for tests, demos and measuring the transport ceiling.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import anyio

from tokenwire.events import Event, Finish, FinishReason, TokenDelta, Usage
from tokenwire.requests import GenerationRequest

_WORD = re.compile(r"\s*\S+|\s+$")


def split_words(text: str) -> list[str]:
    """Each word with its leading whitespace; the pieces join back to `text`."""
    return _WORD.findall(text)


class EchoBackend:
    """Echoes input as output.

    Args:
        delay: seconds to wait before each token (0 streams as fast as the stack allows).
        model: the model id clients must ask for.
    """

    def __init__(self, *, delay: float = 0.0, model: str = "echo") -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay}")
        self.delay = float(delay)
        self.model_id = model

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if request.messages is not None:
            # Each message is split once: the echoed one is also counted in the prompt.
            split = [(m.role, split_words(m.content)) for m in request.messages]
            users = [words for role, words in split if role == "user"]
            all_words = users[-1] if users else []
            prompt_tokens = sum(len(words) for _, words in split)
        else:
            all_words = split_words(request.prompt or "")
            prompt_tokens = len(all_words)
        limit = request.max_tokens
        if limit is None:
            budget = request.default_max_tokens
            limit = budget if budget is not None else len(all_words)
        words = all_words[:limit]
        # The whole answer is known up front, so stop strings are found in it once; a real
        # backend has to hold back text that could begin a stop string instead.
        stop_at, stop_sequence = _find_stop("".join(words), request.stop)
        emitted = 0
        for count, word in enumerate(words, start=1):
            if emitted + len(word) > stop_at:
                if stop_at > emitted:
                    yield TokenDelta(word[: stop_at - emitted], (count,))
                yield Finish("stop", Usage(prompt_tokens, count), stop_sequence=stop_sequence)
                return
            if self.delay:
                await anyio.sleep(self.delay)
            emitted += len(word)
            yield TokenDelta(word, (count,))
        reason: FinishReason = "length" if limit < len(all_words) else "stop"
        yield Finish(reason, Usage(prompt_tokens, len(words)))


def _find_stop(text: str, stops: tuple[str, ...]) -> tuple[int, str | None]:
    """Where the earliest stop string starts in `text` (len(text) if none), and which one."""
    best: tuple[int, str | None] = (len(text) + 1, None)
    for stop in stops:
        index = text.find(stop)
        if index != -1 and index < best[0]:
            best = (index, stop)
    return best
