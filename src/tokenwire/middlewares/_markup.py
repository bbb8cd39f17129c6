"""What the parser middlewares share: a partial marker held back across deltas, the token ids
(and logprobs) of held-back text carried to the next event out, and a JSON value scanner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tokenwire.events import Event, TokenDelta, TokenLogprob, ToolCallDelta


def possible_start(buffer: str, markers: Sequence[str]) -> int:
    """Length of the longest suffix of `buffer` that begins some marker (held back as a stop
    string's beginning is, see `StopMatcher`)."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(buffer)), longest, -1):
            if buffer.endswith(marker[:size]):
                longest = size
                break
    return longest


class Carry:
    """Token ids (and logprobs) of input deltas whose text is not out yet.

    They go on the first text delta that leaves after them (or the first event, when no text
    leaves), so every token is counted once, whatever the split of the markup into deltas.
    """

    __slots__ = ("ids", "logprobs")

    def __init__(self) -> None:
        self.ids: tuple[int, ...] = ()
        self.logprobs: tuple[TokenLogprob, ...] | None = None

    def take(self, delta: TokenDelta) -> None:
        self.ids += delta.token_ids
        if delta.logprobs is not None:
            self.logprobs = (self.logprobs or ()) + delta.logprobs

    def __bool__(self) -> bool:
        return bool(self.ids)

    def attach(self, events: list[Event]) -> None:
        """Put what is carried on the first text delta of `events` (else the first event)."""
        if not events or not (self.ids or self.logprobs):
            return
        at = next((i for i, e in enumerate(events) if isinstance(e, TokenDelta)), 0)
        event = events[at]
        if isinstance(event, TokenDelta):
            logprobs = self.logprobs
            if logprobs is not None:
                logprobs += event.logprobs or ()
            events[at] = replace(event, token_ids=self.ids + event.token_ids, logprobs=logprobs)
        elif isinstance(event, ToolCallDelta):
            # A tool-call delta has no logprobs: those of markup tokens are dropped.
            events[at] = replace(event, token_ids=self.ids + event.token_ids)
        self.ids, self.logprobs = (), None


class JsonValue:
    """Finds where one JSON value ends, a character at a time (no validation beyond that).

    `step` returns PART (the character belongs to the value), END (it ends the value) or AFTER
    (the value ended just before it: a number or literal followed by a delimiter).
    """

    PART, END, AFTER = 0, 1, 2
    __slots__ = ("depth", "escaped", "first", "in_string", "scalar")

    def __init__(self) -> None:
        self.first = ""
        self.depth = 0
        self.in_string = self.escaped = self.scalar = False

    def step(self, char: str) -> int:
        if not self.first:
            self.first = char
            if char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth = 1
            else:
                self.scalar = True
            return self.PART
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif char == "\\":
                self.escaped = True
            elif char == '"':
                self.in_string = False
                if self.depth == 0:
                    return self.END
            return self.PART
        if self.scalar:
            return self.AFTER if char in ",}]" or char.isspace() else self.PART
        if char == '"':
            self.in_string = True
        elif char in "{[":
            self.depth += 1
        elif char in "}]":
            self.depth -= 1
            if self.depth == 0:
                return self.END
        return self.PART
