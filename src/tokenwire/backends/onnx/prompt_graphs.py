"""Where a prompt run goes: a graph that feeds prompt tokens into the shared KV buffer.

The decode graph runs small prompt runs itself. A second graph of the same KV contract can
take the large ones (`prefill_graph`): ONNX Runtime's int8 GEMM graph (`OrtPromptGraph` over
`tokenwire prepare --prefill-graph`) or OpenVINO's bf16 graph (`openvino_prompts`).
Either writes the same buffer, so the decode graph carries on from what it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np
import onnxruntime as ort

from tokenwire.backends.onnx._graph_io import LogitsBuffer
from tokenwire.backends.onnx.kv_cache import SharedKVCache


class PromptGraph(Protocol):
    """Feeds prompt tokens to rows of the shared KV buffer in one run."""

    vocab_size: int
    batches_rows: bool
    """Whether several rows share one model run (False: they run one after another)."""

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        first: int,
        count: int,
        start: int,
        positions: int,
    ) -> np.ndarray:
        """Run `feeds` (`input_ids` `[count, width]`, `attention_mask`, …) for rows
        `[first, first + count)`, each holding `start` tokens; write their keys and values
        at `[start, start + width)` and return logits `[count, positions, vocab]` for the
        last `positions` positions."""
        ...


PromptGraphFactory = Callable[[SharedKVCache, LogitsBuffer], PromptGraph]
"""Builds a prompt graph over the runner's KV buffer and logits buffer."""


class OrtPromptGraph:
    """An ONNX Runtime session bound in place to the KV buffer (IOBinding): nothing copied."""

    def __init__(
        self, session: ort.InferenceSession, cache: SharedKVCache, logits: LogitsBuffer
    ) -> None:
        self.session = session
        self.binding = session.io_binding()
        self.cache = cache
        self.logits = logits
        self.vocab_size = LogitsBuffer(session, 1).vocab_size
        self.batches_rows = True

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        first: int,
        count: int,
        start: int,
        positions: int,
    ) -> np.ndarray:
        for name, value in feeds.items():
            self.binding.bind_cpu_input(name, value)
        self.logits.bind(self.binding, count, positions)
        self.cache.bind(self.binding, first, count)
        self.session.run_with_iobinding(self.binding)
        return self.logits.view(count, positions)


def ort_prompt_graph(session: ort.InferenceSession) -> PromptGraphFactory:
    """The factory for a second ONNX Runtime graph (the int8 GEMM prefill graph)."""
    return lambda cache, logits: OrtPromptGraph(session, cache, logits)
