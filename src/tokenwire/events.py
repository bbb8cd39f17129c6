"""Events: what a generation stream yields — token deltas, then exactly one `Finish`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled", "error"]
PhaseName = Literal["queued", "prefill", "decode"]


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
class TokenDelta:
    """New text produced by one or more tokens. `text` never ends in half a UTF-8 character."""

    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """The last event of every stream: why it ended and what it cost.

    `stop_sequence` names the stop string that ended it, when one did (Anthropic reports it).
    """

    reason: FinishReason
    usage: Usage = Usage()
    stop_sequence: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """A backend's note that a request entered a phase: queued, prefill, or decode.

    Optional: backends that have no queue need not send it. Middlewares read it (queue time,
    prefill time, the phase a cancellation hit); transports and dialects never see it.
    """

    phase: PhaseName


Event = TokenDelta | Finish | Progress
