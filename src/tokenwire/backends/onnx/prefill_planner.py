"""What to prefill before the next decode step: the chunk budget, and which prompts run
together.

The budget serves a latency goal: a target inter-token gap for the running streams (the
chunk gets what the gap leaves after a decode step) and, optionally, a target TTFT (the
oldest prompt gets at least what finishes it in time). Fresh prompts that fit the budget
whole are prefilled whole, several in one run when their slots are contiguous: every
first token after one run, and less model time from 4 rows up (docs/benchmarks.md, "TTFT").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tokenwire.backends.onnx.generation import Generation
from tokenwire.backends.onnx.scheduler import PrefillChunk

# A prompt chunk run beside decoding streams when no prefill has been timed yet.
FIRST_CHUNK = 16

# The smallest chunk beside decoding streams. A chunk of a token or two costs nearly a whole
# decode step (the weights are read either way): a budget too small for this (a target gap
# below the decode step alone, a slow machine) would make a prompt take about a decode step
# per token. Chunks this large are also the only ones timed.
MIN_CHUNK = 16

# Weight of the newest sample in the running estimates of prefill and decode-step time.
_ESTIMATE_WEIGHT = 0.3

PrefillRun = tuple[PrefillChunk, ...]
"""One model run: a chunk of one prompt, or several fresh prompts whole."""


@dataclass(frozen=True, slots=True)
class LatencyGoal:
    """What the operator asks of the loop; None: not asked."""

    target_itl: float | None = None
    """Seconds: the largest gap between two tokens of a running stream."""
    target_ttft: float | None = None
    """Seconds: from a request's arrival to its first token."""


def chunk_seconds(
    goal: LatencyGoal, step_seconds: float | None, fixed: float | None
) -> float | None:
    """Model time a prompt chunk may take beside running streams (None: no limit).

    With a target gap, the gap is one decode step plus the chunk run between two steps, so
    the chunk gets `target_itl - step_seconds` (a step not timed yet counts as nothing; a
    step longer than the target leaves no room, and the caller runs its smallest chunk).
    Without one, the fixed `prefill_budget`.
    """
    if goal.target_itl is None:
        return fixed
    return max(0.0, goal.target_itl - (step_seconds or 0.0))


def update_estimate(estimate: float | None, sample: float) -> float:
    """The running estimate (an exponential average) after `sample`."""
    if estimate is None:
        return sample
    return _ESTIMATE_WEIGHT * sample + (1 - _ESTIMATE_WEIGHT) * estimate


def budget_tokens(
    seconds: float | None,
    token_seconds: float | None,
    chunk: int,
    goal: LatencyGoal,
    oldest: Generation | None,
    now: float | None = None,
    floor: int = MIN_CHUNK,
) -> int:
    """Prompt tokens to run beside decoding streams: what fits `seconds` at `token_seconds`
    each (`FIRST_CHUNK` until timed; None seconds: `chunk`), at least `floor`, at least what
    the target TTFT needs for the `oldest` prompt, at most `chunk`."""
    if seconds is None:
        return chunk
    if token_seconds is None:
        tokens = min(chunk, FIRST_CHUNK)
    else:
        tokens = max(1, min(chunk, int(seconds / token_seconds)))
    tokens = max(tokens, min(chunk, floor))
    if oldest is not None and goal.target_ttft is not None:
        waited = (time.monotonic() if now is None else now) - oldest.queued_at
        left = oldest.prompt_tokens - oldest.prefilled
        tokens = min(chunk, max(tokens, deadline_tokens(left, goal.target_ttft - waited, goal)))
    return tokens


def deadline_tokens(remaining: int, time_left: float, goal: LatencyGoal) -> int:
    """Tokens per step that finish `remaining` prompt tokens within `time_left` seconds at
    one chunk per target gap (0 without both targets)."""
    if goal.target_ttft is None or goal.target_itl is None or goal.target_itl <= 0:
        return 0
    steps = max(1, int(time_left / goal.target_itl))
    return -(-remaining // steps)


def is_fresh(generation: Generation) -> bool:
    """Nothing of the prompt is in its slot yet: no chunk ran, no cached prefix was matched
    (a reused prefix makes the prompt a continuation, which runs alone)."""
    return (
        generation.active
        and generation.prefilled == 0
        and generation.reuse is None
        and generation.cached_tokens == 0
    )


def fresh_batch(
    prefilling: Sequence[Generation], budget: int, slack: int | None
) -> list[Generation]:
    """The largest group of fresh prompts on contiguous slots that one run prefills whole:
    lengths within `slack` of the longest, padded tokens (rows × longest) within `budget`.
    Ties go to the group holding the oldest request; fewer than two: none."""
    if slack is None:
        return []
    order = {id(g): i for i, g in enumerate(prefilling)}
    fresh = sorted(
        (g for g in prefilling if is_fresh(g) and g.prompt_tokens <= budget),
        key=lambda g: g.slot if g.slot is not None else -1,
    )
    best: list[Generation] = []
    for i in range(len(fresh)):
        group = [fresh[i]]
        for g in fresh[i + 1 :]:
            candidate = [*group, g]
            sizes = [c.prompt_tokens for c in candidate]
            if (
                g.slot != group[-1].slot + 1  # type: ignore[operator]
                or max(sizes) - min(sizes) > slack
                or max(sizes) * len(candidate) > budget
            ):
                break
            group = candidate
        oldest = min(order[id(g)] for g in group)
        if len(group) > len(best) or (
            len(group) == len(best) and best and oldest < min(order[id(g)] for g in best)
        ):
            best = group
    return best if len(best) > 1 else []


def plan_runs(prefilling: Sequence[Generation], budget: int, slack: int | None) -> list[PrefillRun]:
    """Runs totalling about `budget` prompt tokens: first a batch of fresh prompts (see
    `fresh_batch`), then the prompts that finish within `budget`, whole, oldest first, then
    chunks of longer ones. A prompt that fits `budget` is never cut: when it does not fit
    what is left, it waits for the next step.

    Finishing prompts go before longer ones (a short prompt's TTFT is not held behind a long
    prompt's every chunk); a long prompt still gets whatever they leave, and they can only
    arrive as fast as slots free up.
    """
    batch = fresh_batch(prefilling, budget, slack)
    runs: list[PrefillRun] = []
    left = budget
    if batch:
        runs.append(tuple(PrefillChunk(g, 0, g.prompt_tokens) for g in batch))
        left -= max(g.prompt_tokens for g in batch) * len(batch)
    rest = [g for g in prefilling if g.active and not any(g is b for b in batch)]
    for finishing in (True, False):
        for generation in rest:
            start = generation.prefilled
            remaining = generation.prompt_tokens - start
            if left <= 0 or (remaining <= budget) != finishing or left < remaining <= budget:
                continue
            end = start + min(remaining, left)
            runs.append((PrefillChunk(generation, start, end),))
            left -= end - start
    return runs
