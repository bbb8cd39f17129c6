"""Choosing the next token from a logits row: greedy, or temperature with top-k and top-p."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from tokenwire.backends.onnx.manifest import SamplingDefaults

_T = TypeVar("_T", int, float)


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Temperature 0 (or top_k 1) is greedy; top_k 0 and top_p 1 switch those filters off."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


def resolve_sampling(
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    *defaults: SamplingDefaults | None,
) -> SamplingParams:
    """Each field from the request, else the first of `defaults` that sets it, else neutral.

    `defaults` go most binding first: the server's overrides, then the model's own (vLLM
    applies a model's `generation_config.json` the same way).

    Raises:
        ValueError: a resolved value is out of range; the message names the field.
    """
    given = [d for d in defaults if d is not None]
    return SamplingParams(
        temperature=_first(temperature, *(d.temperature for d in given), 1.0),
        top_p=_first(top_p, *(d.top_p for d in given), 1.0),
        top_k=_first(top_k, *(d.top_k for d in given), 0),
    )


def _first(*values: _T | None) -> _T:
    for value in values:
        if value is not None:
            return value
    raise AssertionError("the neutral value ends every chain")


class Sampler:
    """Samples one sequence's tokens with its own generator: the same seed, the same text."""

    def __init__(self, params: SamplingParams, seed: int | None = None) -> None:
        self.params = params
        self.rng = np.random.default_rng(generator_seed(seed))

    def __call__(self, logits: np.ndarray) -> int:
        if self.params.greedy:
            return int(np.argmax(logits))
        return sample(logits, self.params, self.rng)

    def skip(self) -> None:
        """Advance the generator past one token sampled elsewhere (a continuation's): `sample`
        draws exactly one number per token, so the seed's later draws stay the same."""
        if not self.params.greedy:
            self.rng.random()


def generator_seed(seed: int | None) -> int | None:
    """`seed` as numpy's generators take it: a non-negative integer.

    The dialects accept -2**63 to 2**64-1 (OpenAI documents an int64 seed; clients send -1
    as "any"). Non-negative seeds pass unchanged, so their streams stay what they were;
    negative ones map one to one above 2**64-1, where no accepted seed lands.
    """
    if seed is None or seed >= 0:
        return seed
    return 2**64 - 1 - seed


def sample(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Draw a token id from `logits` (`[vocab]`): temperature, then top-k, then top-p."""
    scores = logits.astype(np.float64) / params.temperature
    vocab = scores.shape[0]
    ids: np.ndarray | None = None
    if 0 < params.top_k < vocab:
        ids = _top(scores, params.top_k)
    if params.top_p < 1.0:
        ids = _nucleus(scores, ids, params.top_p)
    if ids is None:
        ids = np.arange(vocab)
    chosen = scores[ids]
    probs = np.exp(chosen - chosen.max())
    probs /= probs.sum()
    return int(ids[rng.choice(len(ids), p=probs)])


def _nucleus(scores: np.ndarray, ids: np.ndarray | None, top_p: float) -> np.ndarray:
    """The fewest most likely of `ids` (all when None) whose probability reaches `top_p`."""
    if ids is not None:
        probs = np.exp(scores[ids] - scores[ids[0]])
        cumulative = np.cumsum(probs / probs.sum())
    else:
        # The nucleus is usually a few dozen tokens: sort a growing top slice, not the
        # whole vocabulary, against the full normaliser.
        top = scores.max()
        total = np.exp(scores - top).sum()
        width = 64
        while True:
            ids = _top(scores, width)
            cumulative = np.cumsum(np.exp(scores[ids] - top) / total)
            if cumulative[-1] >= top_p or width >= scores.shape[0]:
                break
            width *= 4
    keep = int(np.searchsorted(cumulative, top_p)) + 1
    return ids[: min(keep, len(ids))]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` largest scores, largest first."""
    ids = np.argpartition(scores, -k)[-k:] if k < scores.shape[0] else np.arange(scores.shape[0])
    return ids[np.argsort(-scores[ids], kind="stable")]


def token_logprobs(
    logits: np.ndarray, token_id: int, top: int
) -> tuple[float, tuple[tuple[int, float], ...]]:
    """`token_id`'s log probability under `logits` and the `top` likeliest tokens with theirs.

    The model's own distribution: a log-softmax of the raw row, before temperature, top-k,
    top-p or a constraint's mask (what OpenAI's `logprobs` report).
    """
    scores = logits.astype(np.float64)
    peak = scores.max()
    normaliser = peak + np.log(np.exp(scores - peak).sum())
    best = _top(scores, top) if top > 0 else np.empty(0, dtype=np.int64)
    alternatives = tuple((int(i), float(scores[i] - normaliser)) for i in best)
    return float(scores[token_id] - normaliser), alternatives
