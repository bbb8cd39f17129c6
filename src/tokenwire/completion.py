"""`Completion`: a whole generation gathered from its events, for non-streamed responses."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenwire.events import Event, Finish, TokenDelta, TokenLogprob, ToolCallDelta
from tokenwire.requests import ToolCall


@dataclass(frozen=True, slots=True)
class Completion:
    """The answer's text, the reasoning before it, the tool calls made, per-token logprobs
    (when asked for), and how it finished."""

    text: str
    finish: Finish
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(slots=True)
class CompletionBuilder:
    """Gathers a stream's events into a `Completion`; `add` each event, then `build`."""

    _text: list[str] = field(default_factory=list)
    _reasoning: list[str] = field(default_factory=list)
    _calls: list[list[str]] = field(default_factory=list)  # [id, name, arguments...]
    _logprobs: list[TokenLogprob] | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, TokenDelta):
            (self._reasoning if event.channel == "reasoning" else self._text).append(event.text)
            if event.logprobs is not None:
                self._logprobs = (self._logprobs or []) + list(event.logprobs)
        elif isinstance(event, ToolCallDelta):
            while len(self._calls) <= event.index:
                self._calls.append(["", ""])
            call = self._calls[event.index]
            if event.id is not None:
                call[0] = event.id
            if event.name is not None:
                call[1] = event.name
            call.append(event.arguments)

    def build(self, finish: Finish) -> Completion:
        calls = tuple(ToolCall(call[0], call[1], "".join(call[2:]) or "{}") for call in self._calls)
        logprobs = None if self._logprobs is None else tuple(self._logprobs)
        return Completion("".join(self._text), finish, "".join(self._reasoning), calls, logprobs)
