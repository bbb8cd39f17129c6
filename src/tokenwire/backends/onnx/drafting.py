"""Prompt lookup drafting: propose a sequence's next tokens from its own earlier text.

The last n tokens of the sequence (prompt and output; n from `max_ngram` down to
`min_ngram`) are looked up among earlier n-grams; the tokens that followed the most recent
earlier occurrence are the draft. An index from n-gram to the position after it is kept up
to date as tokens arrive, so a proposal costs a few dictionary lookups, not a scan.

How many tokens a sequence drafts, if any, is a bet priced by `DraftCosts`: what a verify
run of k drafts costs against a plain step (measured as the backend runs), and how likely
each drafted token is to be kept (`Acceptance`, per sequence and per length of the matched
n-gram: a 2-gram match in free prose is mostly chance, a 4-gram one in copied text mostly
right). The draft length is the k with the best expected tokens per unit of model time; a
sequence drafts only where that beats a plain step by `MIN_GAIN`, so open-ended text, whose
drafts keep failing, soon stops paying for them. `patience` drafts in a row with nothing
accepted still pause drafting for a cooldown that doubles each time (copying text tends to
come in stretches).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The pause after the first run of failed drafts, in generated tokens, and its ceiling.
FIRST_COOLDOWN = 16
MAX_COOLDOWN = 256
# Draft only when the expected tokens per unit of model time beat a plain step by this much:
# the estimates are noisy, and a draft that only breaks even still costs Python time.
MIN_GAIN = 1.1
# What a verify run of k drafts costs before any is timed, in plain steps: 1 + PRIOR_SLOPE·k
# (SmolLM2-135M on 2 Sapphire Rapids cores, docs/benchmarks.md "Speculation": int8 k=4 1.9
# steps, k=8 2.8; int4 2.3 and 3.5).
PRIOR_SLOPE = 0.22
# Weight of the newest timing in a cost estimate.
COST_WEIGHT = 0.1


@dataclass(frozen=True, slots=True)
class DraftSettings:
    """`max_tokens` drafted per step at most; n-grams of `min_ngram`..`max_ngram` tokens.

    `keep_length`: the unpriced rule drafts every match at `max_tokens` rather than cutting
    the length after a draft is partly rejected. It pays where a verify run's extra positions
    cost little (drafts verified on the int8 prefill graph: 16 drafts about 1.8 plain steps
    against 3.5 on the decode graph, docs/benchmarks.md "Speculation"), so a rejected tail
    is cheap and a cut length would forgo the long copies that follow a change.
    """

    max_tokens: int = 8
    min_ngram: int = 2
    max_ngram: int = 5
    patience: int = 3
    keep_length: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"speculative_tokens must be >= 1, got {self.max_tokens}")
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise ValueError(
                f"n-gram sizes must satisfy 1 <= min <= max, got {self.min_ngram}, {self.max_ngram}"
            )


class DraftCosts:
    """A verify run's model time against a plain one-row step, per draft length, learnt from
    timings (`observe_plain`, `observe_verify`); and the draft length worth betting on."""

    __slots__ = ("plain", "ratios")

    def __init__(self, max_tokens: int) -> None:
        self.plain: float | None = None  # seconds of a plain one-row step, sampling included
        self.ratios = [1.0 + PRIOR_SLOPE * k for k in range(max_tokens + 1)]

    def observe_plain(self, seconds: float) -> None:
        self.plain = seconds if self.plain is None else _blend(self.plain, seconds)

    def observe_verify(self, drafted: int, seconds: float) -> None:
        if self.plain is not None and 0 < drafted < len(self.ratios):
            self.ratios[drafted] = _blend(self.ratios[drafted], max(1.0, seconds / self.plain))

    def best(self, p: float, limit: int) -> int:
        """The draft length (up to `limit`) with the most expected tokens per plain step's
        time when each drafted token is kept with probability `p` (given the ones before);
        0 when no length beats a plain step by MIN_GAIN."""
        best, best_gain = 0, MIN_GAIN
        expected, term = 1.0, 1.0  # tokens a run yields: the sampled one, plus kept drafts
        for k in range(1, min(limit, len(self.ratios) - 1) + 1):
            term *= p
            expected += term
            gain = expected / self.ratios[k]
            if gain > best_gain:
                best, best_gain = k, gain
        return best


def _blend(old: float, new: float) -> float:
    return old + COST_WEIGHT * (new - old)


class Acceptance:
    """How often drafted tokens were kept, per matched n-gram length: counts that fade, on
    top of a prior (a pooled `Acceptance`, or a fixed guess) worth `PRIOR_TRIALS` trials."""

    PRIOR_TRIALS = 2.0
    FADE = 0.9  # each record (and each skipped proposal) keeps this share of older evidence

    __slots__ = ("counts", "prior")

    def __init__(self, prior: Acceptance | None = None) -> None:
        self.prior = prior
        self.counts: dict[int, list[float]] = {}  # n → [kept, tried]

    def rate(self, n: int) -> float:
        prior = self.prior.rate(n) if self.prior is not None else 0.5
        kept, tried = self.counts.get(n, (0.0, 0.0))
        return (kept + self.PRIOR_TRIALS * prior) / (tried + self.PRIOR_TRIALS)

    def record(self, n: int, drafted: int, accepted: int) -> None:
        # Tokens after the first rejected one were never judged: they are not evidence.
        counts = self.counts.setdefault(n, [0.0, 0.0])
        counts[0] = counts[0] * self.FADE + accepted
        counts[1] = counts[1] * self.FADE + accepted + (accepted < drafted)
        if self.prior is not None:
            self.prior.record(n, drafted, accepted)

    def fade(self, n: int) -> None:
        """Forget some evidence about `n` (a proposal skipped): the prior comes back."""
        counts = self.counts.get(n)
        if counts is not None:
            counts[0] *= self.FADE
            counts[1] *= self.FADE


class PromptLookupDrafter:
    """One sequence's token history, its n-gram index and its acceptance record.

    Without `costs`, every match is drafted at the current `limit` (grown after full
    acceptance, cut to what was accepted plus one otherwise; always `max_tokens` with
    `keep_length`); with them, the length is priced (see the module docstring).
    """

    __slots__ = (
        "_index",
        "acceptance",
        "cooldown",
        "costs",
        "failures",
        "last_n",
        "limit",
        "pause",
        "settings",
        "tokens",
    )

    def __init__(
        self,
        settings: DraftSettings,
        tokens: Iterable[int],
        costs: DraftCosts | None = None,
        acceptance: Acceptance | None = None,
    ) -> None:
        self.settings = settings
        self.costs = costs
        self.acceptance = Acceptance(acceptance)
        self.tokens: list[int] = []
        # n → n-gram → the position just after its most recent occurrence that has a
        # successor (the sequence's own suffix is never its own match).
        self._index: dict[int, dict[tuple[int, ...], int]] = {
            n: {} for n in range(settings.min_ngram, settings.max_ngram + 1)
        }
        fixed = costs is not None or settings.keep_length
        self.limit = settings.max_tokens if fixed else max(1, settings.max_tokens // 2)
        self.last_n = settings.min_ngram  # the n-gram length the last proposal matched
        self.failures = 0  # drafts in a row with nothing accepted
        self.pause = 0  # tokens to generate before drafting again
        self.cooldown = FIRST_COOLDOWN
        self.extend(tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        """Append tokens the sequence now holds (sampled or accepted)."""
        history = self.tokens
        for token in tokens:
            end = len(history)
            # The n-grams ending at `end` now have a successor: `token`, at position `end`.
            for n, index in self._index.items():
                if end >= n:
                    index[tuple(history[end - n : end])] = end
            history.append(token)
            if self.pause:
                self.pause -= 1

    def propose(self, room: int) -> list[int]:
        """The tokens that followed the longest matching suffix earlier on, as many as pay
        (at most `room`); empty while paused, when nothing matches or when drafting does not
        pay."""
        if room <= 0 or self.pause:
            return []
        history = self.tokens
        for n in range(self.settings.max_ngram, self.settings.min_ngram - 1, -1):
            if len(history) <= n:
                continue
            start = self._index[n].get(tuple(history[-n:]))
            if start is None:
                continue
            self.last_n = n
            count = min(room, self.limit, len(history) - start)
            if self.costs is not None:
                count = self.costs.best(self.acceptance.rate(n), count)
                if not count:
                    self.acceptance.fade(n)
            return history[start : start + count]
        return []

    def record(self, drafted: int, accepted: int) -> None:
        """Adapt to a verified draft of `drafted` tokens of which `accepted` were kept."""
        settings = self.settings
        self.acceptance.record(self.last_n, drafted, accepted)
        if self.costs is not None or settings.keep_length:
            self.limit = settings.max_tokens  # the price, or nothing, sets the length
        elif accepted == drafted:
            self.limit = min(settings.max_tokens, self.limit * 2)
        else:
            self.limit = max(1, accepted + 1)
        if accepted:
            self.failures = 0
            self.cooldown = FIRST_COOLDOWN
            return
        self.failures += 1
        if self.failures >= settings.patience:
            self.failures = 0
            self.pause = self.cooldown
            self.cooldown = min(MAX_COOLDOWN, self.cooldown * 2)


def accepted_prefix(drafts: Sequence[int], tokens: Sequence[int]) -> int:
    """How many of `drafts` the verified `tokens` agree with, from the start."""
    count = 0
    for draft, token in zip(drafts, tokens, strict=False):
        if draft != token:
            break
        count += 1
    return count
