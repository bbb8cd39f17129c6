"""Prompt runs on OpenVINO's CPU plugin in bf16: AMX's matrix unit for the prefill.

A prompt run is compute-bound. ONNX Runtime's CPU provider has no bf16 GEMM on x86 and its
int8 `MatMulNBits` does not use AMX, so on a Sapphire Rapids Xeon a 545-token prompt took
3.7x as long on the int8 decode graph as on OpenVINO running the fp32 build in bf16
(docs/benchmarks.md, "Prefill and batch throughput"). bf16 keeps fp32's range, so it is
also closer to fp32 than the int8 graph is: the first greedy token of 50 chats matched fp32's
98% of the time, against 94% for the int8 decode graph alone.

OpenVINO holds its own tensors, so each run copies the rows' past keys and values in and
the new ones out of the shared buffer: about 25 MB for a 545-token prompt, a few
milliseconds. Decode steps stay on ONNX Runtime's int8 graph and read what was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tokenwire.backends.onnx._graph_io import LAST_POSITIONS
from tokenwire.backends.onnx.kv_cache import SharedKVCache

INSTALL_HINT = "pip install 'tokenwire[openvino]'"


def openvino_core() -> Any:
    """OpenVINO's runtime core, or an error saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise RuntimeError(f"prefill_graph=bf16 needs OpenVINO: {INSTALL_HINT}") from None
    return openvino.Core()


def has_bf16(core: Any) -> bool:
    """Whether OpenVINO's CPU plugin computes in bf16 on this CPU (AVX-512 BF16 or AMX)."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVINOPromptGraph:
    """A bf16 prompt graph (`tokenwire prepare --bf16-prefill-graph`'s OpenVINO model) that
    reads and writes the rows of a shared KV buffer in host memory."""

    def __init__(
        self,
        path: Path,
        cache: SharedKVCache,
        threads: int | None = None,
        precision: str = "bf16",
        warm_tokens: int = 0,
    ) -> None:
        """`precision` other than bf16 ("f32") is for tests on CPUs without bf16.

        `warm_tokens`: run a prompt this long twice before serving. OpenVINO's first runs
        are slow while it sets up (a 548-token run took 326, then 180 ms; in the server the
        first three requests took 279-504 ms, then 169); two runs of the longest chunk take
        that cost at start-up instead of from the first users' requests.
        """
        if cache.host_views is None:
            raise ValueError("prefill_graph=bf16 needs the KV cache in host memory (device cpu)")
        core = openvino_core()
        if precision == "bf16" and not has_bf16(core):
            raise ValueError(
                "prefill_graph=bf16 needs a CPU with bf16 arithmetic (AVX-512 BF16 or AMX); "
                "this one has none: use prefill_graph=int8"
            )
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        model = core.compile_model(str(path), "CPU", config)
        self._request = model.create_infer_request()
        names = {name for port in model.inputs for name in port.get_names()}
        missing = [past for past, _ in cache.names if past not in names]
        if missing or "input_ids" not in names:
            raise ValueError(f"{path} does not take the model's KV inputs ({missing[:2]}…)")
        # A last-position graph takes the slice's start as an input (prepare makes it one).
        self._last_positions = LAST_POSITIONS if LAST_POSITIONS in names else None
        # The views do not own their memory: the cache's buffers must live as long as they do.
        self._cache = cache
        self._names = cache.names
        self._views = cache.host_views
        self.vocab_size = int(model.output("logits").get_partial_shape()[-1].get_length())
        # OpenVINO's GroupQueryAttention takes one row per run (see `run`).
        self.batches_rows = False
        warm = min(warm_tokens, cache.max_context)
        for _ in range(2 if warm else 0):
            # Slot 0's rows get throwaway keys and values; its length stays 0, so the
            # first real prompt there overwrites them.
            self._run_row(np.zeros((1, warm), dtype=np.int64), 0, 0, 1)

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        first: int,
        count: int,
        start: int,
        positions: int,
    ) -> np.ndarray:
        if count == 1:
            return self._run_row(feeds["input_ids"], first, start, positions)[None]
        # OpenVINO's GroupQueryAttention takes one row at a time ("the shape of input data
        # (2) conflicts with the reshape pattern (1)"): a fresh batch's right-padded rows
        # run one by one, unpadded, each placed where the padded run would have put it.
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        width = ids.shape[1]
        logits = np.zeros((count, positions, self.vocab_size), dtype=np.float32)
        for row in range(count):
            size = int(mask[row].sum())
            # This row's positions inside the window: at least one, as the runner checks
            # (rows differ by less than `positions`); every row must run to write its KV.
            kept = positions - (width - size)
            logits[row, :kept] = self._run_row(ids[row : row + 1, :size], first + row, start, kept)
        return logits

    def _run_row(self, ids: np.ndarray, slot: int, start: int, positions: int) -> np.ndarray:
        width = ids.shape[1]
        inputs: dict[str, np.ndarray] = {
            "input_ids": ids,
            "attention_mask": np.ones((1, start + width), dtype=np.int64),
        }
        for (past, _), view in zip(self._names, self._views, strict=True):
            inputs[past] = view[slot : slot + 1, :, :start]
        if self._last_positions is not None:
            inputs[self._last_positions] = np.array([-positions], dtype=np.int64)
        # Outputs read in place (OpenVINO's own copy of a 545-token prompt's keys and values
        # cost 14 ms of 182): valid until the next run, so what is kept is copied out here.
        results = self._request.infer(inputs, share_outputs=True)
        for (_, present), view in zip(self._names, self._views, strict=True):
            view[slot, :, start : start + width] = results[present][0, :, start:]
        logits: np.ndarray = results["logits"][0, -positions:].copy()
        return logits
