"""Sampling: greedy, temperature, top-k, top-p, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from tokenwire.backends.onnx.sampling import Sampler, SamplingParams

LOGITS = np.random.default_rng(0).standard_normal(1000).astype(np.float32) * 3


def draws(params: SamplingParams, seed: int | None, count: int = 300) -> list[int]:
    sampler = Sampler(params, seed)
    return [sampler(LOGITS) for _ in range(count)]


def test_greedy_takes_the_argmax() -> None:
    assert Sampler(SamplingParams(temperature=0.0))(LOGITS) == int(np.argmax(LOGITS))
    assert set(draws(SamplingParams(temperature=1.5, top_k=1), None, 20)) == {
        int(np.argmax(LOGITS))
    }


def test_same_seed_same_draws_other_seed_other_draws() -> None:
    params = SamplingParams(temperature=1.0)
    assert draws(params, 5) == draws(params, 5)
    assert draws(params, 5) != draws(params, 6)


def test_top_k_keeps_only_the_k_most_likely() -> None:
    top = set(np.argsort(-LOGITS)[:5].tolist())
    picked = set(draws(SamplingParams(temperature=2.0, top_k=5), 1))
    assert picked <= top and len(picked) > 1


def test_top_p_keeps_the_smallest_nucleus() -> None:
    probs = np.exp(LOGITS - LOGITS.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    size = int(np.searchsorted(np.cumsum(probs[order]), 0.5)) + 1
    picked = set(draws(SamplingParams(temperature=1.0, top_p=0.5), 2, 600))
    assert picked <= set(order[:size].tolist())
    assert len(picked) > 1


def test_a_wide_nucleus_grows_past_the_first_slice() -> None:
    flat = np.zeros(1000, dtype=np.float32)  # uniform: top_p 0.9 needs 900 tokens
    sampler = Sampler(SamplingParams(temperature=1.0, top_p=0.9), 3)
    picked = {sampler(flat) for _ in range(500)}
    assert len(picked) > 150


def test_temperature_sharpens_and_flattens() -> None:
    best = int(np.argmax(LOGITS))
    cold = draws(SamplingParams(temperature=0.05), 4)
    hot = draws(SamplingParams(temperature=5.0), 4)
    assert cold.count(best) > hot.count(best)


@pytest.mark.parametrize(
    ("fields", "match"),
    [({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"top_k": -2}, "top_k")],
)
def test_out_of_range_parameters_are_refused(fields: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SamplingParams(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-(2**63), -2, -1, 0, 2**63 - 1, 2**64 - 1])
def test_every_seed_the_apis_accept_draws_reproducibly(seed: int) -> None:
    params = SamplingParams(temperature=1.0)
    assert draws(params, seed, 50) == draws(params, seed, 50)


def test_negative_seeds_draw_apart_from_each_other_and_from_their_absolute_values() -> None:
    params = SamplingParams(temperature=1.0)
    seeds = [-(2**63), -2, -1, 0, 1, 2, 2**64 - 1]
    streams = {seed: tuple(draws(params, seed, 50)) for seed in seeds}
    assert len(set(streams.values())) == len(seeds)
