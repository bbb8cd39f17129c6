"""Speculative decode steps: drafted tokens verified in one run, the agreeing prefix kept.

A sequence with a draft (see `drafting`) feeds its last token and the draft in a run of its
own, which returns logits for every position fed; the sequences without one share a plain
step. Position i's token is sampled exactly as a plain step would sample
it (same mask, same sampler, one draw of the sequence's generator); while it equals draft
token i, position i + 1 is sampled too. The run's tokens are the ones a plain decode would
have produced, one step at a time, so:

- greedy output is the same token for token, up to how the graph rounds a run of several
  positions against one (fp32: about 1e-6 apart, so only an exact near-tie could flip;
  int8 quantizes activations per run: see docs/onnx-backend.md);
- sampling keeps its distribution and a seed gives the same text with or without
  speculation. For a draft that is a point mass at d, the standard speculative rule accepts
  d with probability p(d) and on rejection samples from p with d removed, renormalised;
  drawing x ~ p and accepting iff x == d is that rule: P(x = d) = p(d), and x given x != d
  follows the residual;
- a constrained sequence's matcher consumes only tokens it masked and sampled: a draft the
  grammar forbids is simply rejected, and nothing needs rolling back.

The KV written for rejected positions stays in the shared buffer past the sequence's
length, which the next run overwrites; only the length moves (`ModelRunner.advance`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tokenwire.backends.onnx.drafting import (
    Acceptance,
    DraftCosts,
    DraftSettings,
    PromptLookupDrafter,
    accepted_prefix,
)
from tokenwire.backends.onnx.generation import Generation
from tokenwire.backends.onnx.runner import ModelRunner

logger = logging.getLogger("tokenwire.onnx")

# Each draft is verified in a run of its own (see `ModelRunner.verify`), while plain steps
# batch every sequence: with several decoding, a verify run costs about as much as a plain
# step of all of them. Measured on the benchmark CPU (docs/benchmarks.md, "Speculation").
DEFAULT_MAX_BATCH = 1


@dataclass(frozen=True, slots=True)
class SpeculationSettings:
    """Drafting per sequence, and the largest batch in which drafts are verified; `priced`
    False drafts every match at a length grown and cut by acceptance alone, True only what
    measured costs and acceptance say pays (it measured no better: docs/benchmarks.md)."""

    draft: DraftSettings = field(default_factory=DraftSettings)
    max_batch: int = DEFAULT_MAX_BATCH
    priced: bool = False

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"speculation_max_batch must be >= 1, got {self.max_batch}")


Draft = tuple[list[int], int]
"""Tokens to feed after a sequence's last one, and how many of them, from the start, are
certain (forced by its grammar: kept without sampling); the rest are guesses to verify."""

# The most grammar-forced tokens one run feeds.
MAX_FORCED = 64


class Speculator:
    """Proposes drafts for a decode step and runs the verifying step (in the worker).

    With `settings` None nothing is guessed; with `fast_forward`, a constrained sequence's
    tokens forced by its grammar are fed in one run (`TokenConstraint.forced`).
    """

    def __init__(
        self,
        runner: ModelRunner,
        settings: SpeculationSettings | None,
        max_context: int,
        *,
        fast_forward: bool = False,
        max_feed: int = MAX_FORCED + 1,
        max_batch: int = DEFAULT_MAX_BATCH,
    ):
        self.runner = runner
        # A forced run feeds the last token and the forced ones: at most a prefill chunk
        # (the runner's logits buffer is sized for one).
        self.max_forced = max(0, min(MAX_FORCED, max_feed - 1))
        # A forced run is a one-row run too, which re-reads the weights a plain batch shares:
        # at 8 streams it cost a fifth of the aggregate (docs/benchmarks.md), so it has the
        # speculation's batch limit.
        self.max_batch = settings.max_batch if settings is not None else max_batch
        self.settings = settings
        self.max_context = max_context
        self.fast_forward = fast_forward
        self.verify_steps = 0
        self.drafted = 0
        self.accepted = 0
        self.forced = 0
        # Learnt as the backend runs: what verifying costs here, and how often drafts are
        # kept (pooled over sequences: the prior of each new one).
        self.costs = (
            DraftCosts(settings.draft.max_tokens)
            if settings is not None and settings.priced
            else None
        )
        self.acceptance = Acceptance()
        self._drafted_now = 0  # tokens drafted in the step being run (one-row batches)

    def drafts(self, batch: Sequence[Generation]) -> list[Draft] | None:
        """Each sequence's draft for the next step, or None for a plain step."""
        self._drafted_now = 0
        settings = self.settings
        small = len(batch) <= self.max_batch
        if settings is None and (not small or all(g.constraint is None for g in batch)):
            return None  # fast-forward only, and nothing to force
        guess = settings is not None and small
        drafts: list[Draft] = []
        for generation in batch:
            drafter = self._drafter(generation) if settings is not None else None
            room = min(
                generation.max_new_tokens - generation.sampled - 1,
                self.max_context - self.runner.length(generation.slot) - 1,  # type: ignore[arg-type]
            )
            forced = (
                self._forced(generation, min(room, self.max_forced))
                if self.fast_forward and small
                else []
            )
            if forced:
                drafts.append((forced, len(forced)))
            elif guess and drafter is not None:
                drafts.append((drafter.propose(room), 0))
            else:
                drafts.append(([], 0))
        if not any(tokens for tokens, _ in drafts):
            return None
        self._drafted_now = sum(len(tokens) - certain for tokens, certain in drafts)
        return drafts

    @staticmethod
    def _forced(generation: Generation, room: int) -> list[int]:
        constraint = generation.constraint
        # Logprobs need each token's logits row, which a forced token's run does not keep.
        if constraint is None or room <= 0 or generation.top_logprobs is not None:
            return []
        forced = constraint.forced()[:room]
        for i, token in enumerate(forced):
            if token in generation.eos_token_ids:
                return forced[:i]
        return forced

    def step(
        self,
        batch: Sequence[Generation],
        drafts: Sequence[Draft],
        sample: Callable[[Generation, np.ndarray], int],
        before_run: Callable[[], object] | None = None,
    ) -> list[list[int]]:
        """One plain run for the sequences without a draft, then one run per draft (see
        `ModelRunner.verify`); each sequence's new tokens, already scheduled."""
        runs: list[list[int]] = [[] for _ in batch]
        plain = [i for i, (tokens, _) in enumerate(drafts) if not tokens]
        if plain:
            # First: its dummy rows write at the drafted slots' lengths, which their own
            # runs then overwrite.
            rows = self.runner.decode(
                [batch[i].slot for i in plain],  # type: ignore[misc]
                [batch[i].last_token for i in plain],
                before_run,
            )
            before_run = None
            for i, row in zip(plain, rows, strict=True):
                token = sample(batch[i], row)
                batch[i].schedule(token)
                runs[i].append(token)
        for i, (tokens, certain) in enumerate(drafts):
            if tokens:
                runs[i] = self._verify(batch[i], tokens, certain, sample, before_run)
                before_run = None
        self.verify_steps += 1
        return runs

    def _verify(
        self,
        generation: Generation,
        tokens: Sequence[int],
        certain: int,
        sample: Callable[[Generation, np.ndarray], int],
        before_run: Callable[[], object] | None,
    ) -> list[int]:
        slot: int = generation.slot  # type: ignore[assignment]
        # Logits come for the last positions fed: those after the certain tokens suffice.
        logits = self.runner.verify(slot, [generation.last_token, *tokens], before_run)
        run: list[int] = []
        for token in tokens[:certain]:
            # Forced by the grammar: the matcher takes it as it would a sampled one.
            assert generation.constraint is not None
            generation.constraint.consume(token)
            run.append(token)
            generation.schedule(token)
            if generation.exhausted:
                break
        draft = tokens[certain:]
        if not generation.exhausted:
            for position, row in enumerate(logits[len(logits) - len(draft) - 1 :]):
                token = sample(generation, row)
                run.append(token)
                generation.schedule(token)
                if generation.exhausted or position == len(draft) or token != draft[position]:
                    break
        # Fed position j holds a real token iff the token after it is in the run.
        self.runner.advance(slot, len(run))
        self.forced += min(certain, len(run))
        if draft:
            accepted = accepted_prefix(draft, run[certain:])
            self.drafted += len(draft)
            self.accepted += accepted
            assert generation.drafter is not None
            generation.drafter.record(len(draft), accepted)
        return run

    def observe(
        self,
        batch: Sequence[Generation],
        runs: Sequence[Sequence[int]],
        seconds: float | None = None,
    ) -> None:
        """Add each sequence's new tokens to its history (after every step, plain or not);
        a one-row step's `seconds` (drafting and sampling included) price the next drafts."""
        if self.costs is not None and seconds is not None and len(batch) == 1:
            if self._drafted_now:
                self.costs.observe_verify(self._drafted_now, seconds)
            elif len(runs[0]) == 1:
                self.costs.observe_plain(seconds)
        for generation, run in zip(batch, runs, strict=True):
            if generation.drafter is not None:
                generation.drafter.extend(run)

    def _drafter(self, generation: Generation) -> PromptLookupDrafter:
        drafter = generation.drafter
        if drafter is None:
            assert self.settings is not None
            # First decode step: the history is the prompt and the token its prefill sampled.
            history = [*generation.prompt_ids.tolist(), generation.last_token]
            drafter = generation.drafter = PromptLookupDrafter(
                self.settings.draft, history, self.costs, self.acceptance
            )
        return drafter
