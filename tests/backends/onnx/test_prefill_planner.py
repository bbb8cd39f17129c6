"""The prefill plan: which prompts run together, which whole, and the chunk budget a latency
goal gives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pytest

from tokenwire.backends.onnx.generation import Generation
from tokenwire.backends.onnx.prefill_planner import (
    FIRST_CHUNK,
    MIN_CHUNK,
    LatencyGoal,
    budget_tokens,
    chunk_seconds,
    deadline_tokens,
    fresh_batch,
    plan_runs,
)


@dataclass
class Prompt:
    """What the planner reads of a generation."""

    slot: int
    prompt_tokens: int
    prefilled: int = 0
    cached_tokens: int = 0
    reuse: object | None = None
    active: bool = True
    queued_at: float = 0.0


def prompts(*items: Prompt) -> list[Generation]:
    return cast(list[Generation], list(items))


def shape(runs: list[tuple]) -> list[list[tuple[int, int, int]]]:
    return [[(c.generation.slot, c.start, c.end) for c in run] for run in runs]


def test_fresh_prompts_on_contiguous_slots_run_together_whole() -> None:
    waiting = prompts(Prompt(0, 37), Prompt(1, 40), Prompt(2, 35))
    assert shape(plan_runs(waiting, 256, slack=256)) == [[(0, 0, 37), (1, 0, 40), (2, 0, 35)]]


def test_the_batch_fits_the_budget_in_padded_tokens() -> None:
    waiting = prompts(Prompt(0, 37), Prompt(1, 40), Prompt(2, 35))
    # 2 rows × 40 = 80 fit, 3 × 40 = 120 do not: the third waits (whole) for the next step.
    assert shape(plan_runs(waiting, 100, slack=256)) == [[(0, 0, 37), (1, 0, 40)]]


def test_rows_beyond_the_graphs_logits_slack_do_not_share_a_run() -> None:
    # A last-position graph projects the widest row's last positions only.
    waiting = prompts(Prompt(0, 37), Prompt(1, 20), Prompt(2, 36))
    assert fresh_batch(waiting, 256, slack=8) == []
    assert fresh_batch(waiting, 256, slack=None) == []
    assert [g.slot for g in fresh_batch(waiting, 256, slack=17)] == [0, 1, 2]
    assert [g.slot for g in fresh_batch(waiting, 256, slack=16)] == [1, 2]


def test_a_gap_in_the_slots_splits_the_batch_and_the_larger_group_wins() -> None:
    waiting = prompts(Prompt(0, 10), Prompt(2, 10), Prompt(3, 10), Prompt(4, 10))
    assert [g.slot for g in fresh_batch(waiting, 256, slack=0)] == [2, 3, 4]


def test_a_prompt_with_a_cached_prefix_is_a_continuation_and_runs_alone() -> None:
    reused = Prompt(1, 40, prefilled=32, cached_tokens=32)
    matched = Prompt(2, 40, reuse=object())  # matched, not yet restored
    waiting = prompts(Prompt(0, 40), reused, matched, Prompt(3, 40))
    assert fresh_batch(waiting, 256, slack=256) == []
    runs = plan_runs(waiting, 256, slack=256)
    assert all(len(run) == 1 for run in runs)
    assert (1, 32, 40) in [c for run in shape(runs) for c in run]


def test_a_long_prompt_is_still_chunked_and_a_short_one_is_never_cut() -> None:
    long, short, other = Prompt(0, 540), Prompt(2, 37), Prompt(3, 30)
    assert shape(plan_runs(prompts(long), 40, slack=256)) == [[(0, 0, 40)]]
    # The short prompt finishes within the budget: it runs first, whole, and the long one
    # gets what it leaves; the next short one does not fit what is left and waits, uncut.
    runs = plan_runs(prompts(long, short, other), 40, slack=0)
    assert shape(runs) == [[(2, 0, 37)], [(0, 0, 3)]]
    long.prefilled, short.active = 3, False
    assert shape(plan_runs(prompts(long, short, other), 40, slack=0)) == [
        [(3, 0, 30)],
        [(0, 3, 13)],
    ]
    # A long prompt's last chunk finishes it, so it counts as finishing.
    long.prefilled = 520
    assert shape(plan_runs(prompts(other, long), 40, slack=0)) == [[(3, 0, 30)]]


def test_cancelled_prompts_are_left_out() -> None:
    waiting = prompts(Prompt(0, 10, active=False), Prompt(1, 10), Prompt(2, 10))
    assert shape(plan_runs(waiting, 256, slack=0)) == [[(1, 0, 10), (2, 0, 10)]]


def test_a_target_gap_leaves_the_chunk_what_a_decode_step_does_not_take() -> None:
    goal = LatencyGoal(target_itl=0.050)
    assert chunk_seconds(goal, 0.020, fixed=0.030) == pytest.approx(0.030)
    assert chunk_seconds(goal, 0.045, fixed=0.030) == pytest.approx(0.005)
    assert chunk_seconds(goal, 0.080, fixed=0.030) == 0.0  # over the target: smallest chunks
    assert chunk_seconds(goal, None, fixed=0.030) == pytest.approx(0.050)
    assert chunk_seconds(LatencyGoal(), 0.020, fixed=0.030) == 0.030  # no goal: the fixed form
    assert chunk_seconds(LatencyGoal(), 0.020, fixed=None) is None


def test_the_budget_in_tokens_follows_the_measured_prefill_speed() -> None:
    goal = LatencyGoal(target_itl=0.050)
    seconds = chunk_seconds(goal, 0.020, fixed=None)
    assert budget_tokens(seconds, 0.001, 256, goal, None) == 30  # 30 ms at 1 ms a token
    assert budget_tokens(seconds, 0.001, 8, goal, None) == 8  # the floor stays within a chunk
    assert budget_tokens(seconds, 1e-5, 256, goal, None) == 256  # at most a prefill chunk
    # At least MIN_CHUNK: a smaller chunk costs nearly a decode step (1: the old plan's floor).
    assert budget_tokens(0.0, 0.001, 256, goal, None) == MIN_CHUNK
    assert budget_tokens(0.0, 0.001, 256, LatencyGoal(), None, floor=1) == 1
    assert budget_tokens(seconds, None, 256, goal, None) == FIRST_CHUNK  # not timed yet
    assert budget_tokens(None, 0.001, 256, goal, None) == 256


def test_a_target_ttft_raises_the_budget_to_finish_the_oldest_prompt_in_time() -> None:
    goal = LatencyGoal(target_itl=0.050, target_ttft=0.500)
    oldest = cast(Generation, Prompt(0, 540, prefilled=40, queued_at=100.0))
    # 0.31 s left at one chunk per 50 ms: 6 steps for 500 tokens → 84 a step (over 30).
    assert deadline_tokens(500, 0.31, goal) == 84
    assert budget_tokens(0.030, 0.001, 256, goal, oldest, now=100.19) == 84
    assert budget_tokens(0.030, 0.001, 256, goal, oldest, now=101.0) == 256  # late: all out
    assert deadline_tokens(500, 0.3, LatencyGoal(target_itl=0.050)) == 0
