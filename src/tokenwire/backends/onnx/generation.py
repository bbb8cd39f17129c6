"""One request inside the backend: its prompt, sampler, text state and event stream.

The decode loop feeds it sampled tokens with `accept`; it turns them into `TokenDelta`s and
one `Finish`, and hands them to the consumer without ever blocking the loop.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
import numpy as np
from anyio.streams.memory import MemoryObjectSendStream

from tokenwire.backends.onnx.detokenizer import IncrementalDetokenizer, StopMatcher
from tokenwire.backends.onnx.sampling import Sampler, token_logprobs
from tokenwire.errors import TokenwireError
from tokenwire.events import (
    Event,
    Finish,
    FinishReason,
    PhaseName,
    Progress,
    TokenDelta,
    TokenLogprob,
    Usage,
)

if TYPE_CHECKING:
    from tokenwire.backends.onnx.constraints import TokenConstraint
    from tokenwire.backends.onnx.drafting import PromptLookupDrafter
    from tokenwire.prompt_cache import PromptCache, PromptMatch

StreamItem = Event | TokenwireError
RawLogprob = tuple[float, tuple[tuple[int, float], ...]]
"""A sampled token's log probability and the top alternatives' (id, logprob), as sampled."""

# Events buffered per consumer. The loop never waits for a slow reader: when the buffer is
# nearly full, new text is merged into one pending delta. Two places stay free so that the
# pending delta and the Finish (or an error) always fit.
STREAM_BUFFER = 32
_RESERVED = 2


class Phase(enum.Enum):
    WAITING = "waiting"
    PREFILLING = "prefilling"
    RUNNING = "running"
    DONE = "done"


class Generation:
    """A request's state from admission to its `Finish`."""

    __slots__ = (
        "_ids",
        "_logprobs",
        "_pending_ids",
        "_pending_logprobs",
        "_pending_text",
        "_send",
        "cached_tokens",
        "cancelled",
        "completion_tokens",
        "constraint",
        "detokenizer",
        "drafter",
        "eos_token_ids",
        "exhausted",
        "forced",
        "last_token",
        "max_new_tokens",
        "phase",
        "prefilled",
        "prompt_cache",
        "prompt_ids",
        "queued_at",
        "receive",
        "request_id",
        "reuse",
        "sampled",
        "sampled_logprobs",
        "sampler",
        "slot",
        "stop_after",
        "stops",
        "top_logprobs",
    )

    def __init__(
        self,
        request_id: str,
        prompt_ids: np.ndarray,
        *,
        max_new_tokens: int,
        sampler: Sampler,
        detokenizer: IncrementalDetokenizer,
        stops: StopMatcher,
        eos_token_ids: frozenset[int],
        prompt_cache: PromptCache | None = None,
        constraint: TokenConstraint | None = None,
        top_logprobs: int | None = None,
    ) -> None:
        self.request_id = request_id
        self.prompt_ids = prompt_ids
        self.max_new_tokens = max_new_tokens
        self.sampler = sampler
        self.detokenizer = detokenizer
        self.stops = stops
        self.eos_token_ids = eos_token_ids
        self.phase = Phase.WAITING
        self.queued_at = time.monotonic()  # for a target TTFT
        self.slot: int | None = None
        self.prefilled = 0
        self.last_token = -1
        self.sampled = 0
        self.exhausted = False
        self.completion_tokens = 0
        self.forced = 0  # a continuation's tokens, prefilled after the prompt
        self.cancelled = False
        # Constrained decoding: the matcher, and the token count after which its grammar
        # was complete (the sequence ends there without sampling EOS).
        self.constraint = constraint
        self.stop_after: int | None = None
        # Speculation: the sequence's prompt lookup state (made by the speculator).
        self.drafter: PromptLookupDrafter | None = None
        # Logprobs (None: not asked for): the worker appends one per sampled token, the
        # emitter takes them in the same order.
        self.top_logprobs = top_logprobs
        self.sampled_logprobs: deque[RawLogprob] = deque()
        # Prefix reuse: the cache to look up and offer blocks to, the match still to be
        # copied into the slot (before its first prefill chunk), and the tokens it covered.
        self.prompt_cache = prompt_cache
        self.reuse: PromptMatch | None = None
        self.cached_tokens = 0
        self._ids: list[int] = []  # ids whose text is still held back
        self._pending_text = ""  # text not yet delivered (the consumer's buffer was full)
        self._pending_ids: list[int] = []
        self._logprobs: list[TokenLogprob] = []  # parallel to _ids, when asked for
        self._pending_logprobs: list[TokenLogprob] = []
        self._send: MemoryObjectSendStream[StreamItem]
        send, receive = anyio.create_memory_object_stream[StreamItem](STREAM_BUFFER)
        self._send, self.receive = send, receive

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def active(self) -> bool:
        return self.phase is not Phase.DONE and not self.cancelled

    @property
    def decoding(self) -> bool:
        """Whether the next decode step should feed this sequence."""
        return self.active and not self.exhausted

    def sample(self, logits: np.ndarray) -> int:
        """Choose the next token from this sequence's logits row (in the worker): under the
        constraint's mask, noting its logprob when asked for."""
        masked = logits if self.constraint is None else self.constraint.apply(logits)
        token_id = self.sampler(masked)
        if self.constraint is not None:
            self.constraint.consume(token_id)
        if self.top_logprobs is not None:
            self.sampled_logprobs.append(token_logprobs(logits, token_id, self.top_logprobs))
        return token_id

    def schedule(self, token_id: int) -> None:
        """The loop's side of a sampled token: feed it next, unless it ends the sequence.

        Events are made later by `accept` (in the emitter task); EOS and the length limit
        are known here already, so the loop never feeds a sequence past its end. Only a stop
        string is found later, costing at most a step whose token is dropped.
        """
        self.last_token = token_id
        self.sampled += 1
        if token_id in self.eos_token_ids or self.sampled >= self.max_new_tokens:
            self.exhausted = True
        elif self.constraint is not None and self.constraint.finished:
            self.exhausted = True
            self.stop_after = self.sampled

    def replay(self, token_ids: Sequence[int]) -> None:
        """Take tokens a replica that died had generated (a continuation), as if they had just
        been sampled: the sampler, constraint, length and text state advance past them, and
        their text is delivered as one delta. Call before admission, then `extend_prompt`."""
        for token_id in token_ids:
            if self.phase is Phase.DONE:
                return
            if self.constraint is not None:
                self.constraint.consume(token_id)
            self.sampler.skip()
            self.schedule(token_id)
            self._take(token_id)
        self._deliver(limit=STREAM_BUFFER)

    def extend_prompt(self, token_ids: Sequence[int]) -> None:
        """Prefill the replayed tokens after the prompt (usage still counts them as output)."""
        self.forced = len(token_ids)
        self.prompt_ids = np.concatenate(
            [self.prompt_ids, np.asarray(token_ids, dtype=self.prompt_ids.dtype)]
        )

    def note(self, phase: PhaseName) -> None:
        """Tell middlewares the request entered `phase` (dropped if the consumer lags); a
        prefill note states the prompt's size, its cached prefix already matched, and the
        prompt tokens prefilled so far."""
        if self._send.statistics().current_buffer_used < STREAM_BUFFER - _RESERVED:
            if phase == "prefill":
                prompt = self.prompt_tokens - self.forced
                self._put(
                    Progress(
                        phase,
                        prompt,
                        min(self.cached_tokens, prompt),
                        done=min(self.prefilled, prompt),
                    )
                )
            else:
                self._put(Progress(phase))

    def accept(self, token_id: int) -> None:
        """Take one sampled token: stream its text, and finish on EOS, a stop string or length."""
        self.accept_run((token_id,))

    def accept_run(self, token_ids: Sequence[int]) -> None:
        """Take tokens verified together (one delta for their text), in order, exactly as
        one `accept` each: whatever follows the end (EOS, a stop string, length) is dropped."""
        for token_id in token_ids:
            if self.phase is Phase.DONE or self.cancelled:
                return
            self._take(token_id)
        self._deliver(limit=STREAM_BUFFER - _RESERVED)

    def _take(self, token_id: int) -> None:
        self.completion_tokens += 1
        self._ids.append(token_id)
        if self.top_logprobs is not None:
            self._logprobs.append(self._logprob(token_id))
        if token_id in self.eos_token_ids:
            self._finish("stop")
            return
        text, stop = self.stops.feed(self.detokenizer.step(token_id))
        self._emit(text)
        if stop is not None:
            self._close(Finish("stop", self._usage(), stop_sequence=stop))
        elif self.completion_tokens == self.stop_after:
            self._finish("stop")  # the constraint's grammar is complete
        elif self.completion_tokens >= self.max_new_tokens:
            self._finish("length")

    def _logprob(self, token_id: int) -> TokenLogprob:
        logprob, top = self.sampled_logprobs.popleft()
        text = self.detokenizer.token_text
        return TokenLogprob(text(token_id), logprob, tuple((text(i), lp) for i, lp in top))

    def _finish(self, reason: FinishReason) -> None:
        """End normally: flush held-back text (a stop string may still complete in it)."""
        text, stop = self.stops.feed(self.detokenizer.flush())
        if stop is None:
            text += self.stops.flush()
        self._emit(text)
        self._close(Finish("stop" if stop else reason, self._usage(), stop_sequence=stop))

    def fail(self, error: TokenwireError) -> None:
        """End with `error`, raised to the consumer in place of the remaining events."""
        if self.phase is not Phase.DONE:
            self._close(error)

    def _usage(self) -> Usage:
        prompt = self.prompt_tokens - self.forced
        return Usage(prompt, self.completion_tokens, min(self.cached_tokens, prompt))

    def _emit(self, text: str) -> None:
        """Make `text` (and the ids held back for it) pending; `accept_run` delivers it."""
        if not text:
            return
        self._pending_text += text
        self._pending_ids += self._ids
        self._pending_logprobs += self._logprobs
        self._ids, self._logprobs = [], []

    def _deliver(self, limit: int) -> None:
        if not self._pending_text:
            return
        if self._send.statistics().current_buffer_used >= limit:
            return
        logprobs = tuple(self._pending_logprobs) if self.top_logprobs is not None else None
        delta = TokenDelta(self._pending_text, tuple(self._pending_ids), logprobs)
        self._pending_text, self._pending_ids, self._pending_logprobs = "", [], []
        self._put(delta)

    def _close(self, last: StreamItem) -> None:
        self._deliver(limit=STREAM_BUFFER)
        self._put(last)
        self.phase = Phase.DONE
        self._send.close()

    def _put(self, item: StreamItem) -> None:
        try:
            self._send.send_nowait(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The consumer is gone: the sequence leaves the batch at the next step.
            self.cancelled = True
        except anyio.WouldBlock:  # pragma: no cover - the reserved places make this unreachable
            self.cancelled = True

    def retire(self) -> None:
        """Leave the scheduler: close the stream (the consumer sees it end)."""
        self.phase = Phase.DONE
        self._send.close()
