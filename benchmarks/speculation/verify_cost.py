"""What a verify run of k drafted tokens costs, in plain one-row decode steps.

Each iteration times a plain one-row step and then a verify run of k drafts on the same slot
(its length reset between runs, so every run sees the same past), for each k; the figure is
the median of the paired ratios, which machine noise hits alike. The session is loaded as
the backend loads it with `speculation=true, speculative_tokens=16`; for a model with an
int8 prefill graph, a second profile verifies on that graph (`prefill_graph_decode_rows=2`)
while plain steps stay on the decode graph.

Run: `python -m benchmarks.speculation.verify_cost [MODEL_DIR ...]` (default: the prepared
int8 and int4 SmolLM2).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._shared.prepared_model import find_model
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.backends.onnx.manifest import ModelManifest

DRAFTS = (1, 2, 3, 4, 6, 8, 12, 16)


def _seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


# The backend options that send verify runs to the int8 prefill graph (the speculation
# benchmark's "int8 graph" condition builds on them).
ON_INT8_GRAPH: dict[str, Any] = {"prefill_graph": "int8", "prefill_graph_decode_rows": 2}


def profile(
    model: Path, iterations: int = 40, threads: int = 2, options: dict[str, Any] | None = None
) -> tuple[float, dict[int, float]]:
    """The median plain step (seconds) and, per k, the median verify ÷ plain ratio, with the
    backend `options` given (`ON_INT8_GRAPH`: verify runs on the int8 prefill graph)."""
    backend = OnnxBackend(
        model, max_batch=1, speculation=True, speculative_tokens=max(DRAFTS),
        intra_op_threads=threads, **(options or {}),
    )  # fmt: skip
    runner = backend._load()
    runner.prefill(0, np.random.default_rng(0).integers(1, min(40000, runner.vocab_size), 120))
    length = runner.length(0)

    def plain() -> None:
        runner.release(0)
        runner.advance(0, length)
        runner.decode([0], [123])

    def verify(k: int) -> Callable[[], object]:
        def run() -> None:
            runner.release(0)
            runner.advance(0, length)
            runner.verify(0, list(range(200, 201 + k)))

        return run

    for _ in range(3):  # warm-up: first runs allocate
        plain()
    ratios: dict[int, list[float]] = {k: [] for k in DRAFTS}
    steps = []
    for _ in range(iterations):
        for k in DRAFTS:
            step = _seconds(plain)
            ratios[k].append(_seconds(verify(k)) / step)
            steps.append(step)
    return statistics.median(steps), {k: statistics.median(r) for k, r in ratios.items()}


def main(argv: list[str]) -> None:
    if argv:
        models = [Path(a) for a in argv]
    else:
        first = find_model(None)
        models = [first, first.parent / "smollm2-135m-instruct-int4"]
    for model in models:
        variants = [("", None)]
        if ModelManifest.read(model).prefill_model_file is not None:
            variants.append((", verified on the int8 prefill graph", ON_INT8_GRAPH))
        for label, options in variants:
            step, ratios = profile(model, options=options)
            cells = "  ".join(f"k={k}: {r:.2f}" for k, r in ratios.items())
            print(
                f"{model.name}{label}: plain step {step * 1e3:.1f} ms; verify, in plain steps: {cells}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
