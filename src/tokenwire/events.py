"""Events: what a generation stream yields — text and tool-call deltas, then exactly one `Finish`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length", "tool_calls", "cancelled", "error"]
PhaseName = Literal["queued", "prefill", "decode"]
Channel = Literal["answer", "reasoning"]
"""Where a text delta belongs: the answer, or the model's reasoning (thinking) before it."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one generation. `prompt_tokens` includes `cached_prompt_tokens`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token's log probability, and the likeliest tokens at its position
    (`top`, most likely first, as many as the request's `top_logprobs`)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class TokenDelta:
    """New text produced by one or more tokens. `text` never ends in half a UTF-8 character.

    `logprobs` has one entry per token when the request asked for them (else None); `channel`
    says whether the text is the answer or the model's reasoning.
    """

    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None
    channel: Channel = "answer"


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """Part of a tool call the model is making.

    Calls are numbered by `index` from 0 in the order they start, and one call's deltas are
    contiguous: a call is complete when the next one starts or the stream finishes. The first
    delta of a call carries its `id` and `name`; any delta may carry a fragment of its JSON
    `arguments` (the fragments joined are one JSON object). `token_ids` are the tokens that
    produced it, for counting.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    token_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Finish:
    """The last event of every stream: why it ended and what it cost.

    `reason` is "tool_calls" when the model ended its turn by calling tools. `stop_sequence` names the stop string that ended it, when one did (Anthropic reports it).
    """

    reason: FinishReason
    usage: Usage = Usage()
    stop_sequence: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """A backend's note that a request entered a phase: queued, prefill, or decode.

    Optional, but the first one also says the backend accepted the request (it is
    *admitted*), which lets the transport start the response before the first token (see
    `tokenwire.stream_start`). Middlewares read it (queue time, prefill time, the phase a
    cancellation hit); a dialect's exchange sees the ones before the first token when it
    declares `ObservesProgress`; a client that asked for progress gets them as payloads.
    A "prefill" note may state the prompt's size before the first token: `prompt_tokens`
    (None: not stated) including `cached_prompt_tokens`, as the `Finish`'s usage will count
    them, and `done`, the prompt tokens prefilled so far (cached ones included); a backend
    that prefills in chunks sends one note per chunk.
    """

    phase: PhaseName
    prompt_tokens: int | None = None
    cached_prompt_tokens: int = 0
    done: int | None = None


Event = TokenDelta | ToolCallDelta | Finish | Progress
