"""The ONNX backend's options: their measured defaults, checked once into `BackendOptions`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tokenwire.backends.onnx.drafting import DraftSettings
from tokenwire.backends.onnx.manifest import ModelManifest, SamplingDefaults
from tokenwire.backends.onnx.prefill_planner import LatencyGoal
from tokenwire.backends.onnx.sampling import resolve_sampling
from tokenwire.backends.onnx.speculation import SpeculationSettings

# A prompt chunk beside running streams adds about this much to their gaps, so the largest
# gap is near the budget plus one decode step. Smaller budgets cost the long prompt dearly:
# a chunk of a few tokens costs nearly a whole decode step (the weights are read either way),
# so its TTFT grows steeply as the budget shrinks. The default keeps the running streams'
# largest gap under 100 ms on the benchmark CPU (the sweep: docs/benchmarks.md, "Gaps").
DEFAULT_PREFILL_BUDGET_MS = 30.0

# Speculation (prompt lookup) measured no worse than plain decoding on open-ended text and
# faster on text that copies its prompt: docs/benchmarks.md, "Speculation".
DEFAULT_SPECULATION = False

# Flushing denormal floats to zero: the bare int8 graph ran a 545-token prompt 1.25-1.35x
# and a batch-8 decode step 1.13-1.20x faster, but served the gain was within noise (TTFT
# 1.07x, 8 streams 0.98x): off (docs/benchmarks.md, "Prefill and batch throughput").
DEFAULT_DENORMAL_AS_ZERO = False

# The prefill graph more than halves a long prompt's time to first token on an AMX Xeon
# (563 -> 216 ms for 545 tokens, served), but its
# per-row int8 activations round more coarsely than MatMulNBits: over 50 short chat prompts
# the first greedy token agreed with fp32 on 82% (decode graph alone: 94%). Off by default:
# docs/benchmarks.md, "Prefill and batch throughput".
DEFAULT_PREFILL_GRAPH = False

PrefillGraph = Literal["off", "int8", "bf16"]
"""Where large prompt runs go: the decode graph ("off"), ONNX Runtime's int8 GEMM graph
(`tokenwire prepare --prefill-graph`) or OpenVINO's bf16 graph (`--bf16-prefill-graph`)."""
PREFILL_GRAPHS: tuple[PrefillGraph, ...] = ("off", "int8", "bf16")

# Prompt runs of at least this many tokens go to the prefill graph. Measured side by side on
# an AMX Xeon: the prefill graph is 1.4x the decode graph's speed at 16 rows, 1.2x at 8 and
# even at 1 (docs/benchmarks.md, "Prefill and batch throughput"); below 16 the small gain
# is not worth its slightly coarser rounding. 16 is also the scheduler's smallest chunk.
DEFAULT_PREFILL_GRAPH_MIN_TOKENS = 16
# The bf16 graph (OpenVINO) has a larger fixed cost per run, 25-40 ms where prompt lengths
# change from run to run: it overtook the int8 decode graph at 64 tokens (1.23x; 0.82x at
# 32) and reached 3.4x at 545.
DEFAULT_BF16_PREFILL_GRAPH_MIN_TOKENS = 64

# The most prompt tokens one run feeds. With the bf16 prefill graph a 545-token prompt's
# first token came 0.84x as late run whole as in 256-token chunks (each OpenVINO run has a
# fixed cost and copies the past in); the int8 graphs measured the same either way
# (docs/benchmarks.md, "Prefill and batch throughput").
DEFAULT_PREFILL_CHUNK = 256
DEFAULT_BF16_PREFILL_CHUNK = 1024


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """`OnnxBackend`'s options, checked and normalised (see its docstring for each one)."""

    max_batch: int
    max_queue: int
    prefill_chunk: int
    prefill_budget_ms: float | None
    """None: always run whole `prefill_chunk`s (an option of 0 means the same)."""
    goal: LatencyGoal
    batch_prefill: bool
    allow_spinning: bool
    speculation: SpeculationSettings | None
    """None: speculation is off."""
    speculation_max_batch: int
    fast_forward: bool
    denormal_as_zero: bool
    prefill_graph: PrefillGraph
    prefill_graph_min_tokens: int
    prefill_graph_decode_rows: int
    """0: decode steps and verify runs never run on the prefill graph."""
    context_length: int
    """Tokens per sequence: `max_context`, or the model's when it is None."""
    intra_op_threads: int | None
    sampling_overrides: SamplingDefaults


def check_options(
    manifest: ModelManifest,
    model_dir: Path,
    *,
    max_batch: int,
    max_queue: int,
    prefill_chunk: int | None,
    prefill_budget_ms: float | None,
    target_itl_ms: float | None,
    target_ttft_ms: float | None,
    batch_prefill: bool,
    max_context: int | None,
    intra_op_threads: int | None,
    allow_spinning: bool,
    default_temperature: float | None,
    default_top_p: float | None,
    default_top_k: int | None,
    speculation: bool,
    speculative_tokens: int,
    speculation_max_batch: int,
    speculation_priced: bool,
    fast_forward: bool,
    denormal_as_zero: bool,
    prefill_graph: bool | str,
    prefill_graph_min_tokens: int | None,
    prefill_graph_decode_rows: int = 0,
) -> BackendOptions:
    """The options as given, checked against each other and against the model's manifest
    (its context and its recommended sampling, read from `model_dir`).

    Raises:
        ValueError: an option is out of range or of the wrong kind, naming it; or the
            manifest's sampling defaults are out of range.
    """
    graph = parse_prefill_graph(prefill_graph)
    if prefill_chunk is None:
        prefill_chunk = DEFAULT_BF16_PREFILL_CHUNK if graph == "bf16" else DEFAULT_PREFILL_CHUNK
    if prefill_graph_min_tokens is None:
        prefill_graph_min_tokens = (
            DEFAULT_BF16_PREFILL_GRAPH_MIN_TOKENS
            if graph == "bf16"
            else DEFAULT_PREFILL_GRAPH_MIN_TOKENS
        )
    for name, value, low in (
        ("max_batch", max_batch, 1),
        ("max_queue", max_queue, 0),
        ("prefill_chunk", prefill_chunk, 1),
    ):
        if int(value) < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if prefill_budget_ms is not None and float(prefill_budget_ms) < 0:
        raise ValueError(f"prefill_budget_ms must be >= 0, got {prefill_budget_ms}")
    for name, target in (("target_itl_ms", target_itl_ms), ("target_ttft_ms", target_ttft_ms)):
        if target is not None and not float(target) > 0:
            raise ValueError(f"{name} must be > 0 (milliseconds), got {target}")
    if target_ttft_ms is not None and target_itl_ms is None:
        raise ValueError("target_ttft_ms needs target_itl_ms (the pace chunks run at)")
    goal = LatencyGoal(
        None if target_itl_ms is None else float(target_itl_ms) / 1e3,
        None if target_ttft_ms is None else float(target_ttft_ms) / 1e3,
    )
    flags = (
        ("batch_prefill", batch_prefill),
        ("allow_spinning", allow_spinning),
        ("speculation", speculation),
        ("speculation_priced", speculation_priced),
        ("fast_forward", fast_forward),
    )
    for name, flag in flags:
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be true or false, got {flag!r}")
    if int(prefill_graph_min_tokens) < 1:
        raise ValueError(f"prefill_graph_min_tokens must be >= 1, got {prefill_graph_min_tokens}")
    if int(prefill_graph_decode_rows) < 0:
        raise ValueError(f"prefill_graph_decode_rows must be >= 0, got {prefill_graph_decode_rows}")
    if int(prefill_graph_decode_rows) > 0 and graph != "int8":
        # OpenVINO's graph runs one row per run and pays a fixed cost on each: a decode
        # step there would cost more than on the decode graph.
        raise ValueError(
            "prefill_graph_decode_rows runs batched decode steps on the int8 prefill graph: "
            f"it needs prefill_graph=int8, got prefill_graph={graph}"
        )
    if not isinstance(denormal_as_zero, bool):
        raise ValueError(f"denormal_as_zero must be true or false, got {denormal_as_zero!r}")
    limit = manifest.kv.max_context
    if max_context is not None and not 2 <= int(max_context) <= limit:
        raise ValueError(
            f"max_context must be between 2 and {limit} (the model's), got {max_context}"
        )
    overrides = SamplingDefaults(default_temperature, default_top_p, default_top_k, source="server")
    for defaults, origin in (
        (overrides, "backend option default_"),
        (manifest.sampling_defaults, f"{model_dir / 'manifest.json'}: "),
    ):
        try:
            resolve_sampling(None, None, None, defaults)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{origin}{exc}") from None
    return BackendOptions(
        max_batch=int(max_batch),
        max_queue=int(max_queue),
        prefill_chunk=int(prefill_chunk),
        prefill_budget_ms=float(prefill_budget_ms or 0) or None,
        goal=goal,
        batch_prefill=batch_prefill,
        allow_spinning=allow_spinning,
        speculation=(
            SpeculationSettings(
                DraftSettings(
                    max_tokens=int(speculative_tokens),
                    # A full draft verified on the int8 prefill graph costs little more
                    # than a short one, so it is not cut after a rejection.
                    keep_length=graph == "int8"
                    and 0 < int(prefill_graph_decode_rows) <= int(speculative_tokens) + 1,
                ),
                int(speculation_max_batch),
                priced=speculation_priced,
            )
            if speculation
            else None
        ),
        speculation_max_batch=int(speculation_max_batch),
        fast_forward=fast_forward,
        denormal_as_zero=denormal_as_zero,
        prefill_graph=graph,
        prefill_graph_min_tokens=int(prefill_graph_min_tokens),
        prefill_graph_decode_rows=int(prefill_graph_decode_rows),
        context_length=int(max_context) if max_context is not None else limit,
        intra_op_threads=int(intra_op_threads) if intra_op_threads is not None else None,
        sampling_overrides=overrides,
    )


def parse_prefill_graph(value: bool | str) -> PrefillGraph:
    """The `prefill_graph` option: "off", "int8" or "bf16"; true means "int8" (the graph the
    option first named), false "off"."""
    if isinstance(value, bool):
        return "int8" if value else "off"
    for graph in PREFILL_GRAPHS:
        if isinstance(value, str) and value.strip().lower() == graph:
            return graph
    raise ValueError(f"prefill_graph must be one of off, int8, bf16 (or true/false), got {value!r}")
