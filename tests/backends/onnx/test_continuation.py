"""Continuing a generation another replica began (failover): the backend replays the given
tokens as the events they made, prefills them after the prompt, and generates on. Greedy on
fp32 (the tiny models) equals the uninterrupted run token for token; on the real int8 model
the replayed part is exact and the rest is what the model computes after a prefill (see
docs/resume.md, "Failover")."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from tests.backends.onnx._helpers import collect, request, running
from tokenwire.events import TokenDelta
from tokenwire.interfaces import ContinuesGeneration
from tokenwire.requests import GenerationRequest


def groups_of(deltas: tuple[TokenDelta, ...], cut: int) -> tuple[tuple[int, ...], ...]:
    return tuple(delta.token_ids for delta in deltas[:cut])


@pytest.mark.parametrize("sampling", [{"temperature": 0.0}, {"temperature": 1.0, "seed": 7}])
def test_a_continuation_equals_the_uninterrupted_run_on_fp32(
    model_dir: Path, sampling: dict[str, float]
) -> None:
    async def main() -> None:
        async with running(model_dir, max_batch=2) as backend:
            assert isinstance(backend, ContinuesGeneration)
            ask = request("hello there", max_tokens=24, **sampling)
            whole = await collect(backend, ask)
            assert len(whole.deltas) > 4
            for cut in (1, len(whole.deltas) // 2, len(whole.deltas) - 1):
                again = await collect(
                    backend, replace(ask, continuation=groups_of(whole.deltas, cut))
                )
                # The replayed events come first, exactly as they were; then the same rest.
                assert again.deltas[:cut] == whole.deltas[:cut]
                assert again.text == whole.text and again.ids == whole.ids
                assert again.finish == whole.finish  # usage counts replayed tokens as output

    anyio.run(main)


def test_a_continuation_that_ends_in_its_replay_finishes_there(model_dir: Path) -> None:
    async def main() -> None:
        async with running(model_dir) as backend:
            ask = request("hello there", max_tokens=6)
            whole = await collect(backend, ask)
            again = await collect(
                backend, replace(ask, continuation=groups_of(whole.deltas, len(whole.deltas)))
            )
            assert again.text == whole.text and again.finish.reason == whole.finish.reason
            assert again.finish.usage.completion_tokens == 6

    anyio.run(main)


def test_requests_with_logprobs_are_not_continued(model_dir: Path) -> None:
    async def main() -> None:
        async with running(model_dir) as backend:
            ask: GenerationRequest = request("hi", logprobs=True, top_logprobs=2)
            assert not backend.can_continue(ask)
            assert backend.can_continue(request("hi"))

    anyio.run(main)


@pytest.mark.slow
def test_a_greedy_continuation_on_the_real_int8_model(smollm2_dir: Path) -> None:
    """The replayed part is exact. int8 quantizes activations per run, so the prompt and the
    replayed tokens prefilled in one run round otherwise than when they were decoded one by
    one: the continuation equals the uninterrupted run until a near-tie, a step whose two
    likeliest tokens were within 0.1 nats (on this prompt about half the cut points reach
    one, all within 0.031 nats; docs/resume.md)."""

    async def main() -> None:
        async with running(smollm2_dir, max_batch=2) as backend:
            ask = GenerationRequest(
                model=backend.model_id,
                prompt="The three primary colors are",
                max_tokens=32,
                temperature=0.0,
            )
            probed = await collect(backend, replace(ask, logprobs=True, top_logprobs=2))
            gaps = [lp.top[0][1] - lp.top[1][1] for d in probed.deltas for lp in d.logprobs or ()]
            whole = await collect(backend, ask)
            assert whole.ids == probed.ids
            for cut in range(1, len(whole.deltas), 3):
                again = await collect(
                    backend, replace(ask, continuation=groups_of(whole.deltas, cut))
                )
                assert again.deltas[:cut] == whole.deltas[:cut]
                assert again.finish.usage == whole.finish.usage or again.ids != whole.ids
                differ = [
                    i for i, (a, b) in enumerate(zip(again.ids, whole.ids, strict=False)) if a != b
                ]
                if differ:
                    assert gaps[differ[0]] < 0.1, (cut, differ[0], gaps[differ[0]])
                else:
                    assert again.text == whole.text

    anyio.run(main)
