"""`reasoning`: a model's `<think>…</think>` text moves to the reasoning channel.

The text inside the tags becomes `TokenDelta(channel="reasoning")`, the rest stays the
answer; a tag split across tokens is held back, as a stop string's beginning is. As in
DeepSeek-R1 and Qwen3, there is one reasoning block and it opens the output (after
whitespace): an opening tag later in the answer is answer text. For models whose chat template
already opened the block (the output starts inside it), set `starts_in_reasoning`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from tokenwire.events import Channel, Event, Finish, TokenDelta
from tokenwire.interfaces import Generate
from tokenwire.middlewares._markup import Carry, possible_start
from tokenwire.pipeline import closing
from tokenwire.requests import GenerationRequest

__all__ = ["ReasoningParser", "ReasoningParserMiddleware"]


class ReasoningParserMiddleware:
    """Splits reasoning from the answer in a text backend's output.

    Args:
        app: the next `Generate`.
        open_tag: what opens the reasoning block.
        close_tag: what closes it.
        starts_in_reasoning: the output begins inside the block (the prompt opened it), so
            everything up to `close_tag` is reasoning.
    """

    def __init__(
        self,
        app: Generate,
        *,
        open_tag: str = "<think>",
        close_tag: str = "</think>",
        starts_in_reasoning: bool = False,
    ) -> None:
        if not open_tag or not close_tag:
            raise ValueError("open_tag and close_tag must not be empty")
        self.app = app
        self.open_tag, self.close_tag = open_tag, close_tag
        self.starts_in_reasoning = starts_in_reasoning

    async def __call__(self, request: GenerationRequest) -> AsyncIterator[Event]:
        parser = ReasoningParser(self.open_tag, self.close_tag, self.starts_in_reasoning)
        async with closing(self.app(request)) as events:
            async for event in events:
                if isinstance(event, TokenDelta) and event.channel == "answer":
                    for out in parser.feed(event):
                        yield out
                    continue
                if isinstance(event, Finish):
                    for out in parser.finish():
                        yield out
                yield event


# Where the parser is: before any text (an opening tag may come), inside the block, or in
# the answer for good (every delta passes as it is).
_START, _REASONING, _ANSWER = range(3)


class ReasoningParser:
    """One stream's parser: `feed` each answer delta, then `finish`; both return deltas."""

    def __init__(self, open_tag: str, close_tag: str, starts_in_reasoning: bool) -> None:
        self.open_tag, self.close_tag = open_tag, close_tag
        self._state = _REASONING if starts_in_reasoning else _START
        self._held = ""
        self._carry = Carry()
        self._out: list[TokenDelta] = []

    def feed(self, delta: TokenDelta) -> list[TokenDelta]:
        if self._state == _ANSWER and not (self._held or self._carry):
            return [delta]
        self._carry.take(delta)
        self._out = []
        buffer, self._held = self._held + delta.text, ""
        if self._state == _START:
            stripped = buffer.lstrip()
            if self.open_tag.startswith(stripped):
                self._held = buffer  # whitespace, or the beginning of the opening tag
            elif stripped.startswith(self.open_tag):
                self._state = _REASONING
                buffer = stripped[len(self.open_tag) :]
            else:
                self._state = _ANSWER
        if self._state == _REASONING:
            index = buffer.find(self.close_tag)
            if index != -1:
                self._emit(buffer[:index], "reasoning")
                self._state = _ANSWER
                buffer = buffer[index + len(self.close_tag) :]
            else:
                keep = possible_start(buffer, (self.close_tag,))
                self._emit(buffer[: len(buffer) - keep], "reasoning")
                self._held = buffer[len(buffer) - keep :]
        if self._state == _ANSWER:
            self._emit(buffer, "answer")
        return self._flush(delta.logprobs is not None)

    def finish(self) -> list[TokenDelta]:
        self._out = []
        held, self._held = self._held, ""
        # Held text was a tag's beginning that never completed: it is text where it stood.
        self._emit(held, "reasoning" if self._state == _REASONING else "answer")
        return self._flush(self._carry.logprobs is not None)

    def _emit(self, text: str, channel: Channel) -> None:
        if not text:
            return
        if self._out and self._out[-1].channel == channel:
            last = self._out[-1]
            self._out[-1] = replace(last, text=last.text + text)
        else:
            self._out.append(TokenDelta(text, channel=channel))

    def _flush(self, keep_logprobs: bool) -> list[TokenDelta]:
        out: list[TokenDelta] = self._out
        if keep_logprobs:
            out = [replace(d, logprobs=()) if d.logprobs is None else d for d in out]
        events: list[Event] = list(out)
        self._carry.attach(events)
        return [event for event in events if isinstance(event, TokenDelta)]
