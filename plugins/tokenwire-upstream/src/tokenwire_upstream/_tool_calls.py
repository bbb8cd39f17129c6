"""Upstream tool-call fragments in the order the event contract wants: one call at a time.

OpenAI's stream format numbers each fragment with its call's `index`, so a server may
interleave calls; tokenwire's contract keeps one call's deltas contiguous. Calls stream live
while the upstream sends them in order (vLLM, llama.cpp and OpenAI all do); a fragment of a
later call, or text, that arrives while the live call is unfinished waits in a queue until
that call's arguments form a whole JSON object (nothing valid can follow one) or the stream
ends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tokenwire import GenerationError, TokenDelta, ToolCallDelta


@dataclass(frozen=True, slots=True)
class ToolCallFragment:
    """One entry of an upstream `delta.tool_calls`; `index` is None when the server left it out."""

    index: int | None
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class _Call:
    id: str | None
    name: str | None
    arguments: list[str] = field(default_factory=list)
    number: int = -1  # ours, given when the call's first delta goes out
    checked: int = -1  # len(arguments) when it was last found incomplete


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class ToolCallSequencer:
    """Takes a stream's text deltas and tool-call fragments; returns the events to send now."""

    __slots__ = ("_calls", "_closed", "_ids", "_last_key", "_live", "_new_id", "_queue", "calls")

    def __init__(self, new_id: Callable[[], str] = _new_call_id) -> None:
        self._new_id = new_id
        self._calls: dict[int, _Call] = {}  # by the upstream's index
        self._ids: dict[str, int] = {}
        self._last_key: int | None = None
        self._live: _Call | None = None
        self._closed: set[int] = set()  # id() of calls whose deltas are all out
        self._queue: list[_Call | TokenDelta] = []
        self.calls = 0
        """How many calls have started going out."""

    def text(self, delta: TokenDelta) -> list[TokenDelta | ToolCallDelta]:
        self._queue.append(delta)
        return self._advance()

    def tool_call(self, fragment: ToolCallFragment) -> list[TokenDelta | ToolCallDelta]:
        key = self._key(fragment)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = _Call(fragment.id, fragment.name)
            if fragment.id:
                self._ids[fragment.id] = key
            self._queue.append(call)
        else:
            call.id = call.id or fragment.id
            call.name = call.name or fragment.name
        self._last_key = key
        if id(call) in self._closed:
            if fragment.arguments.strip():
                raise GenerationError(
                    "The upstream server continued a tool call after its arguments ended."
                )
            return []
        if not fragment.arguments:
            return self._advance()
        call.arguments.append(fragment.arguments)
        if call is self._live:
            out: list[TokenDelta | ToolCallDelta] = [
                ToolCallDelta(call.number, arguments=fragment.arguments)
            ]
            return out + self._advance()
        return self._advance()

    def finish(self) -> list[TokenDelta | ToolCallDelta]:
        """Everything still held, in order: the stream has ended, so every call is complete."""
        out: list[TokenDelta | ToolCallDelta] = []
        self._live = None
        for item in self._queue:
            if isinstance(item, TokenDelta):
                out.append(item)
            else:
                out.append(self._start(item))
        self._queue.clear()
        return out

    def _key(self, fragment: ToolCallFragment) -> int:
        if fragment.index is not None:
            return fragment.index
        # No index (some servers send whole calls): a new id is a new call.
        if fragment.id and fragment.id in self._ids:
            return self._ids[fragment.id]
        if fragment.id or self._last_key is None:
            return max(self._calls, default=-1) + 1
        return self._last_key

    def _advance(self) -> list[TokenDelta | ToolCallDelta]:
        out: list[TokenDelta | ToolCallDelta] = []
        while self._queue:
            live = self._live
            if live is not None:
                if not self._complete(live):
                    break
                self._closed.add(id(live))
                self._live = None
            head = self._queue[0]
            if isinstance(head, TokenDelta):
                self._queue.pop(0)
                out.append(head)
                continue
            if head.name is None:  # its first delta must carry the name
                break
            self._queue.pop(0)
            out.append(self._start(head))
            self._live = head
        return out

    def _start(self, call: _Call) -> ToolCallDelta:
        if call.name is None:
            raise GenerationError("The upstream server sent a tool call without a name.")
        call.number = self.calls
        self.calls += 1
        call.id = call.id or self._new_id()
        return ToolCallDelta(call.number, call.id, call.name, "".join(call.arguments))

    @staticmethod
    def _complete(call: _Call) -> bool:
        if len(call.arguments) == call.checked:
            return False
        try:
            whole = json.loads("".join(call.arguments))
        except ValueError:
            call.checked = len(call.arguments)
            return False
        return isinstance(whole, dict)
