"""Speculative decoding on the tiny fp32 model: what streams is exactly what streams
without it (greedy and seeded sampling, stops, limits, constraints), only in fewer steps."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from tests.backends.onnx._helpers import Result, collect, request, running
from tests.backends.onnx.test_runner import make_runner
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.backends.onnx.drafting import PromptLookupDrafter
from tokenwire.requests import OutputConstraint

REPEATING = "one two three four one two three four one two three"
pytestmark = pytest.mark.anyio

PROMPTS = (REPEATING, "The capital city of France is", "def main():", "Numbers: 1 2 3 4 5")


@pytest.fixture
def shared_model(tiny_model_dirs: dict[str, Path]) -> Path:
    return tiny_model_dirs["shared"]


@pytest.fixture
def forced_drafts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sequence drafts at every step: the last tokens again (right when the model
    loops, wrong otherwise), so accepting, rejecting and partial runs all happen."""

    def propose(self: PromptLookupDrafter, room: int) -> list[int]:
        return self.tokens[-3:][: max(0, min(room, 3))]

    monkeypatch.setattr(PromptLookupDrafter, "propose", propose)


async def _collect_all(backend: OnnxBackend, requests: list[Any]) -> list[Result]:
    """Every request's result, the requests running at once (one batch)."""
    results: list[Result | None] = [None] * len(requests)

    async def one(i: int) -> None:
        results[i] = await collect(backend, requests[i])

    async with anyio.create_task_group() as group:
        for i in range(len(requests)):
            group.start_soon(one, i)
    done = [r for r in results if r is not None]
    assert len(done) == len(requests)
    return done


async def _both(
    model: Path, requests: list[Any], *, drafts: bool = True, **options: Any
) -> tuple[list[Result], ...]:
    outcomes = []
    for speculation in (False, True):
        async with running(model, speculation=speculation, **options) as backend:
            results = await _collect_all(backend, requests)
            if speculation and drafts:
                assert backend._loop is not None and backend._loop.speculator is not None
                assert backend._loop.speculator.drafted > 0
            outcomes.append(results)
    return tuple(outcomes)


def _same(plain: list[Result], speculative: list[Result]) -> None:
    for a, b in zip(plain, speculative, strict=True):
        assert b.ids == a.ids
        assert b.text == a.text
        assert b.finish == a.finish  # reason, stop sequence and usage


async def test_greedy_output_is_token_for_token_the_same(shared_model: Path) -> None:
    requests = [request(p, 40) for p in PROMPTS]
    plain, speculative = await _both(shared_model, requests, speculation_max_batch=8)
    _same(plain, speculative)


@pytest.mark.usefixtures("forced_drafts")
async def test_rejected_and_partial_drafts_change_nothing_in_a_mixed_batch(
    shared_model: Path,
) -> None:
    requests = [request(p, 30) for p in PROMPTS]
    plain, speculative = await _both(shared_model, requests, speculation_max_batch=8)
    _same(plain, speculative)


@pytest.mark.usefixtures("forced_drafts")
async def test_seeded_sampling_gives_the_same_text_with_and_without(shared_model: Path) -> None:
    requests = [request(REPEATING, 24, temperature=1.0, top_p=0.9, seed=s) for s in range(6)]
    plain, speculative = await _both(shared_model, requests, speculation_max_batch=8)
    _same(plain, speculative)


@pytest.mark.usefixtures("forced_drafts")
async def test_sampled_tokens_keep_their_distribution(shared_model: Path) -> None:
    """Frequencies of the 4th token over many seeds (all drafts forced): the same counts."""
    requests = [request(REPEATING, 4, temperature=1.5, seed=s) for s in range(60)]
    plain, speculative = await _both(shared_model, requests, speculation_max_batch=8)
    counts = [
        Counter(r.ids[3] for r in results if len(r.ids) > 3) for results in (plain, speculative)
    ]
    assert len(counts[0]) > 5  # a spread distribution, not one forced token
    assert counts[1] == counts[0]


@pytest.mark.usefixtures("forced_drafts")
@pytest.mark.parametrize("max_tokens", [1, 2, 3, 5, 8])
async def test_max_tokens_cuts_a_verified_run_where_it_would_end(
    shared_model: Path, max_tokens: int
) -> None:
    requests = [request(REPEATING, max_tokens)]
    plain, speculative = await _both(shared_model, requests, drafts=max_tokens > 2)
    _same(plain, speculative)
    assert speculative[0].finish.usage.completion_tokens == len(speculative[0].ids)


@pytest.mark.usefixtures("forced_drafts")
async def test_a_stop_string_inside_a_run_ends_the_stream_as_without(shared_model: Path) -> None:
    (reference,), _ = await _both(shared_model, [request(REPEATING, 30)])
    stop = reference.text[len(reference.text) // 2 :][:3]
    plain, speculative = await _both(shared_model, [request(REPEATING, 30, stop=[stop])])
    _same(plain, speculative)
    assert speculative[0].finish.stop_sequence == stop


@pytest.mark.usefixtures("forced_drafts")
async def test_constrained_rows_accept_only_what_the_grammar_allows(shared_model: Path) -> None:
    requests = [
        request(p, 40, constraint=OutputConstraint("json_object"), temperature=1.0, seed=i)
        for i, p in enumerate(PROMPTS)
    ]
    plain, speculative = await _both(shared_model, requests, speculation_max_batch=8)
    _same(plain, speculative)


async def test_the_concat_layout_decodes_without_speculation(
    tiny_model_dirs: dict[str, Path],
) -> None:
    async with running(tiny_model_dirs["concat"], speculation=True) as backend:
        result = await collect(backend, request(REPEATING, 12))
        assert backend._loop is not None and backend._loop.speculator is None
    assert result.finish.reason == "length"


def test_verify_logits_equal_one_token_steps_up_to_rounding(shared_model: Path) -> None:
    prompt = list(range(5, 30))
    stepwise, batched = make_runner(shared_model), make_runner(shared_model)
    stepwise.prefill(0, np.array(prompt))
    batched.prefill(0, np.array(prompt))
    feed = [40, 41, 42, 43]
    expected = [stepwise.decode([0], [t])[0].copy() for t in feed]
    got = batched.verify(0, feed)
    assert batched.length(0) == len(prompt)
    # Not bit for bit: MLAS multiplies a 4-row activation in another order than 1 row.
    np.testing.assert_allclose(got, np.stack(expected), rtol=0, atol=1e-4)
    batched.advance(0, 2)  # keep two; the next run overwrites the other two
    assert batched.length(0) == len(prompt) + 2
    again = batched.verify(0, [50])[0]
    fresh = make_runner(shared_model)
    fresh.prefill(0, np.array(prompt))
    for token in (40, 41):
        fresh.decode([0], [token])
    np.testing.assert_allclose(again, fresh.decode([0], [50])[0], rtol=0, atol=1e-4)


SCHEMA = {
    "type": "object",
    "properties": {
        "first_name": {"type": "string", "maxLength": 6},
        "favourite_number": {"type": "integer"},
    },
    "required": ["first_name", "favourite_number"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("speculation", [False, True])
@pytest.mark.parametrize("max_tokens", [3, 5, 40])  # forced runs cut by the limit, or not
async def test_fast_forward_streams_exactly_what_sampling_would(
    shared_model: Path, speculation: bool, max_tokens: int
) -> None:
    schema = OutputConstraint("json_schema", schema=SCHEMA)
    requests = [request(p, max_tokens, constraint=schema) for p in PROMPTS[1:3]]
    requests += [request(PROMPTS[0], max_tokens), request(PROMPTS[3], max_tokens)]
    outcomes = []
    for fast_forward in (False, True):
        async with running(
            shared_model,
            fast_forward=fast_forward,
            speculation=speculation,
            max_batch=4,
            speculation_max_batch=4,  # forced runs beside plain rows, as in a mixed batch
        ) as backend:
            results = await _collect_all(backend, requests)
            assert backend._loop is not None
            speculator = backend._loop.speculator
            forced = speculator.forced if speculator is not None else 0
            assert forced > 0 if fast_forward and max_tokens > 5 else forced == 0
            outcomes.append(results)
    _same(*outcomes)
    for result in outcomes[1]:
        assert result.finish.usage.completion_tokens == len(result.ids)
