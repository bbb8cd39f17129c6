"""`echo`: streams the last user message (or the prompt) back, one word per token.

Deterministic and model-free: for tests, demos and measuring the transport ceiling. Agent
requests follow fixed rules (tool calls, JSON constraints, logprobs, reasoning; see
`_echo_agent` and docs/quickstart.md), so every dialect and transport can be tested without
a model.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Literal, NamedTuple

import anyio

from tokenwire.backends._echo_agent import (
    call_id,
    check_supported,
    choose_tools,
    example_arguments,
    example_from_schema,
    logprob_for,
)
from tokenwire.errors import GenerationError
from tokenwire.events import (
    Channel,
    Event,
    Finish,
    FinishReason,
    Progress,
    TokenDelta,
    ToolCallDelta,
    Usage,
)
from tokenwire.requests import GenerationRequest

_WORD = re.compile(r"\s*\S+|\s+$")


def split_words(text: str) -> list[str]:
    """Each word with its leading whitespace; the pieces join back to `text`."""
    return _WORD.findall(text)


class _Step(NamedTuple):
    """One token of the planned output: a text piece, a call's start (`text` is its name),
    or a piece of call `call`'s arguments."""

    kind: Literal["answer", "reasoning", "call", "arguments"]
    text: str = ""
    call: int = 0
    id: str | None = None


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

    def can_continue(self, request: GenerationRequest) -> bool:
        """Every echo request continues (`ContinuesGeneration`): its output is a plan."""
        return True

    async def count_tokens(self, request: GenerationRequest) -> int:
        """The prompt's words, as `generate` counts them in its usage."""
        return _read_prompt(request)[2]

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        check_supported(request)
        text, echoed, prompt_tokens = _read_prompt(request)
        yield Progress("prefill", prompt_tokens)
        plan = _plan(request, text, echoed)
        limit = request.max_tokens
        if limit is None:
            budget = request.default_max_tokens
            limit = budget if budget is not None else len(plan)
        steps = plan[:limit]
        # The whole answer is known up front, so stop strings are found in it once; a real
        # backend has to hold back text that could begin a stop string instead.
        answer = "".join(step.text for step in steps if step.kind == "answer")
        stop_at, stop_sequence = _find_stop(answer, request.stop)
        top = request.top_logprobs if request.logprobs else None
        # A continuation's tokens are the plan's first ones (an echo token's id is its
        # position): replayed at once, as the same events, then the rest at the usual pace.
        replayed = _check_continuation(request.continuation)
        emitted = 0
        for count, step in enumerate(steps, start=1):
            ids = (count,)
            if step.kind == "answer" and emitted + len(step.text) > stop_at:
                if stop_at > emitted:
                    yield _text(step.text[: stop_at - emitted], ids, "answer", top)
                yield Finish("stop", Usage(prompt_tokens, count), stop_sequence=stop_sequence)
                return
            if self.delay and count > replayed:
                await anyio.sleep(self.delay)
            if step.kind == "call":
                yield ToolCallDelta(step.call, step.id, step.text, "", ids)
            elif step.kind == "arguments":
                yield ToolCallDelta(step.call, arguments=step.text, token_ids=ids)
            else:
                if step.kind == "answer":
                    emitted += len(step.text)
                yield _text(step.text, ids, step.kind, top)
        reason: FinishReason = "length" if limit < len(plan) else "stop"
        if reason == "stop" and any(step.kind == "call" for step in steps):
            reason = "tool_calls"
        yield Finish(reason, Usage(prompt_tokens, len(steps)))


def _check_continuation(groups: tuple[tuple[int, ...], ...]) -> int:
    """How many plan steps a continuation replays.

    Raises:
        GenerationError: its ids are not the plan's positions 1, 2, ... (not echo's tokens).
    """
    ids = [token for group in groups for token in group]
    if ids != list(range(1, len(ids) + 1)):
        raise GenerationError("The continuation's token ids are not this backend's.")
    return len(ids)


def _read_prompt(request: GenerationRequest) -> tuple[str, list[str], int]:
    """The text to echo, its words, and the prompt's size in words (every message's)."""
    if request.messages is None:
        text = request.prompt or ""
        echoed = split_words(text)
        return text, echoed, len(echoed)
    # Each message is split once: the echoed one is also counted in the prompt.
    split = [(m.role, m.content, split_words(m.content)) for m in request.messages]
    users = [(text, words) for role, text, words in split if role == "user"]
    text, echoed = users[-1] if users else ("", [])
    return text, echoed, sum(len(words) for _, _, words in split)


def _plan(request: GenerationRequest, text: str, echoed: list[str]) -> list[_Step]:
    """Every token the request would produce without a limit: reasoning first (when asked),
    then tool calls (when a rule picks tools) or the answer."""
    steps: list[_Step] = []
    tools = choose_tools(request, text)
    for index, tool in enumerate(tools):
        steps.append(_Step("call", tool.name, index, call_id(index, tool.name, text)))
        arguments = json.dumps(example_arguments(tool))
        steps.extend(_Step("arguments", piece, index) for piece in split_words(arguments))
    if not tools:
        constraint = request.constraint
        if constraint is not None and constraint.kind == "json_schema":
            echoed = split_words(json.dumps(example_from_schema(constraint.schema or {})))
        elif constraint is not None and constraint.kind == "json_object":
            echoed = split_words(json.dumps({"echo": text}))
        steps.extend(_Step("answer", word) for word in echoed)
    if request.reasoning:
        thought = (
            f"Calling {', '.join(tool.name for tool in tools)}."
            if tools
            else f"Echoing {len(steps)} words."
        )
        steps[:0] = [_Step("reasoning", word) for word in split_words(thought)]
    return steps


def _text(text: str, ids: tuple[int, ...], channel: Channel, top: int | None) -> TokenDelta:
    logprobs = None if top is None else (logprob_for(text, top),)
    return TokenDelta(text, ids, logprobs, channel)


def _find_stop(text: str, stops: tuple[str, ...]) -> tuple[int, str | None]:
    """Where the earliest stop string starts in `text` (len(text) if none), and which one."""
    best: tuple[int, str | None] = (len(text) + 1, None)
    for stop in stops:
        index = text.find(stop)
        if index != -1 and index < best[0]:
            best = (index, stop)
    return best
