"""One forward step of the decoder through IOBinding, for either KV contract.

A runner owns the KV cache and each slot's length; the decode loop tells it which slots
feed which tokens. Its methods block (they run the graph) and are called from one worker
thread at a time. The logits they return are views of a buffer the next call overwrites.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import onnxruntime as ort

from tokenwire.backends.onnx._graph_io import RunnerSettings
from tokenwire.backends.onnx.concat_runner import ConcatKVRunner
from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.backends.onnx.prompt_graphs import PromptGraphFactory
from tokenwire.backends.onnx.session import Placement
from tokenwire.backends.onnx.shared_runner import SharedKVRunner


class ModelRunner(Protocol):
    """Runs the graph for one slot's prompt chunk or one token per running slot."""

    vocab_size: int
    prefix_reuse: bool
    """Whether `restore` and `snapshot` work here; the prefix cache is ignored otherwise."""
    can_verify: bool
    """Whether drafts can be verified here (logits for several positions); speculation is
    off otherwise."""
    can_feed: bool
    """Whether `verify` and `advance` work here (grammar fast-forward needs only these)."""
    batch_slack: int | None
    """How many tokens shorter than the longest a row of `prefill_fresh` may be (None:
    `prefill_fresh` does not work here)."""

    def length(self, slot: int) -> int:
        """Tokens held in `slot`'s KV cache."""
        ...

    def restore(self, slot: int, blocks: Sequence[np.ndarray], length: int) -> None:
        """Make the empty `slot` hold the first `length` tokens whose KV is `blocks` (copied)."""
        ...

    def snapshot(self, slot: int, start: int, count: int, block_tokens: int) -> list[np.ndarray]:
        """Copies of `count` blocks of `slot`'s KV from position `start` (see `kv_blocks`)."""
        ...

    def prefill(self, slot: int, token_ids: np.ndarray) -> np.ndarray:
        """Feed `token_ids` after what `slot` holds; the last position's logits `[vocab]`."""
        ...

    def prefill_fresh(self, first: int, prompts: Sequence[np.ndarray]) -> np.ndarray:
        """Prefill the empty slots from `first` on with `prompts`, one row each, in one run;
        each row's last-position logits `[len(prompts), vocab]`."""
        ...

    def decode(
        self,
        slots: Sequence[int],
        tokens: Sequence[int],
        before_run: Callable[[], object] | None = None,
    ) -> np.ndarray:
        """Feed one token to each slot in one run; logits `[len(slots), vocab]`.

        `before_run` is called just before the graph runs, when nothing but the run is left.
        """
        ...

    def verify(
        self, slot: int, token_ids: Sequence[int], before_run: Callable[[], object] | None = None
    ) -> np.ndarray:
        """Feed `token_ids` after what `slot` holds; logits `[n, vocab]` for the last n
        positions fed: all of them, or the last `verify_tokens` where the graph projects only
        those. The slot's length stays put until `advance`."""
        ...

    def advance(self, slot: int, tokens: int) -> None:
        """Count the first `tokens` fed to `slot` by the last `verify` as held."""
        ...

    def release(self, slot: int) -> None:
        """Forget `slot`'s cache; it may be prefilled afresh."""
        ...


def create_runner(
    session: ort.InferenceSession,
    contract: KVContract,
    placement: Placement,
    settings: RunnerSettings,
    prefill: PromptGraphFactory | None = None,
) -> ModelRunner:
    """The runner for the manifest's KV layout; `prefill` runs large prompt chunks (the
    shared layout only)."""
    if contract.layout == "shared":
        return SharedKVRunner(session, contract, placement, settings, prefill)
    if prefill is not None:
        raise ValueError("a prefill graph needs the shared KV layout")
    return ConcatKVRunner(session, contract, placement, settings)
