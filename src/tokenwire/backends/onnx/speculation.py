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

from tokenwire.backends.onnx.drafting import DraftSettings, PromptLookupDrafter, accepted_prefix
from tokenwire.backends.onnx.generation import Generation
from tokenwire.backends.onnx.runner import ModelRunner

logger = logging.getLogger("tokenwire.onnx")

# Each draft is verified in a run of its own (see `ModelRunner.verify`), while plain steps
# batch every sequence: with several decoding, a verify run costs about as much as a plain
# step of all of them. Measured on the benchmark CPU (docs/benchmarks.md, "Speculation").
DEFAULT_MAX_BATCH = 1


@dataclass(frozen=True, slots=True)
class SpeculationSettings:
    """Drafting per sequence, and the largest batch in which drafts are verified."""

    draft: DraftSettings = field(default_factory=DraftSettings)
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"speculation_max_batch must be >= 1, got {self.max_batch}")


class Speculator:
    """Proposes drafts for a decode step and runs the verifying step (in the worker)."""

    def __init__(self, runner: ModelRunner, settings: SpeculationSettings, max_context: int):
        self.runner = runner
        self.settings = settings
        self.max_context = max_context
        self.verify_steps = 0
        self.drafted = 0
        self.accepted = 0

    def drafts(self, batch: Sequence[Generation]) -> list[list[int]] | None:
        """Each sequence's draft for the next step, or None for a plain step."""
        drafters = [self._drafter(g) for g in batch]
        if len(batch) > self.settings.max_batch:
            return None
        drafts = []
        for generation, drafter in zip(batch, drafters, strict=True):
            room = min(
                generation.max_new_tokens - generation.sampled - 1,
                self.max_context - self.runner.length(generation.slot) - 1,  # type: ignore[arg-type]
            )
            drafts.append(drafter.propose(room))
        return drafts if any(drafts) else None

    def step(
        self,
        batch: Sequence[Generation],
        drafts: Sequence[Sequence[int]],
        sample: Callable[[Generation, np.ndarray], int],
        before_run: Callable[[], object] | None = None,
    ) -> list[list[int]]:
        """One plain run for the sequences without a draft, then one run per draft (see
        `ModelRunner.verify`); each sequence's new tokens, already scheduled."""
        runs: list[list[int]] = [[] for _ in batch]
        plain = [i for i, draft in enumerate(drafts) if not draft]
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
        for i, draft in enumerate(drafts):
            if draft:
                runs[i] = self._verify(batch[i], draft, sample, before_run)
                before_run = None
        self.verify_steps += 1
        return runs

    def _verify(
        self,
        generation: Generation,
        draft: Sequence[int],
        sample: Callable[[Generation, np.ndarray], int],
        before_run: Callable[[], object] | None,
    ) -> list[int]:
        slot: int = generation.slot  # type: ignore[assignment]
        logits = self.runner.verify(slot, [generation.last_token, *draft], before_run)
        run: list[int] = []
        for position, row in enumerate(logits):
            token = sample(generation, row)
            run.append(token)
            generation.schedule(token)
            if generation.exhausted or position == len(draft) or token != draft[position]:
                break
        # Fed position j holds a real token iff the token after it was sampled.
        self.runner.advance(slot, len(run))
        accepted = accepted_prefix(draft, run)
        self.drafted += len(draft)
        self.accepted += accepted
        assert generation.drafter is not None
        generation.drafter.record(len(draft), accepted)
        return run

    def observe(self, batch: Sequence[Generation], runs: Sequence[Sequence[int]]) -> None:
        """Add each sequence's new tokens to its history (after every step, plain or not)."""
        for generation, run in zip(batch, runs, strict=True):
            if generation.drafter is not None:
                generation.drafter.extend(run)

    def _drafter(self, generation: Generation) -> PromptLookupDrafter:
        drafter = generation.drafter
        if drafter is None:
            # First decode step: the history is the prompt and the token its prefill sampled.
            history = [*generation.prompt_ids.tolist(), generation.last_token]
            drafter = generation.drafter = PromptLookupDrafter(self.settings.draft, history)
        return drafter
