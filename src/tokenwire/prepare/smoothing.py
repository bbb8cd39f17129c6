"""SmoothQuant for the int8 prefill graph: move activation outliers into the weights.

The prefill graph quantizes each activation row to int8 with one scale (`prefill_graph`). A
few input channels of a transformer's activations run tens of times larger than the rest,
and one scale per row spends most of its levels on them. SmoothQuant (Xiao et al., 2023)
divides each input channel j of a weight MatMul by

    s_j = max|x_j| ** alpha / max|W_j| ** (1 - alpha)

and multiplies the weight's row j by it: the product is unchanged, and both sides quantize
with less error. The division folds into the op that produces x, so the graph gains no op:

- an RMSNorm's output (the QKV and gate/up projections' input): its scale;
- the MLP's gated product (down_proj's input): the columns of the projection that feeds it
  directly (the up projection).

Any other activation read only by weight MatMuls (the attention output, o_proj's input) is
divided by a Mul of its own. Folding that one into the value columns of the QKV projection
would cost nothing, but it would change the values the graph writes to the KV cache, which
the decode graph shares and reads unscaled.

Calibration text runs through the fp32 graph and its activations are kept. Each activation
gets its own alpha: the candidate whose simulated rounding (per-row int8 activations,
per-column int8 weights, as the prefill graph rounds) errs least on its MatMuls' outputs.
On SmolLM2-135M (docs/benchmarks.md), over the prompt positions of 50 chats, mean KL to fp32
was 0.096 unsmoothed, 0.033 with one alpha of 0.6 for every activation and 0.023–0.025
searched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.prepare.quality import cpu_session, prompt_feeds

ALPHAS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
"""The alphas searched for each activation (0: left as it is). One alpha for all measured
best at 0.6 of 0.5–0.8 (mean KL over 50 chats 0.033; 0.038 at 0.5, 0.036 at 0.7, 0.088 at
0.8); searched, SmolLM2-135M's activations took 0.4–0.8, most of them 0.7."""

CALIBRATION_ROWS = 1024
"""The most activation rows kept per activation (the search multiplies them by each weight)."""

_FLOOR = 1e-5  # keeps a silent channel's or an all-zero weight row's factor finite

# Calibration text, rendered through the model's chat template: prose, code, JSON and a
# list, so that each kind of token's activations are seen. It is not the quality gate's
# text, so the gate's figures are not measured on what the smoothing was fitted to.
CALIBRATION_MESSAGES: tuple[tuple[str, str], ...] = (
    ("system", "You are a helpful assistant who answers carefully and briefly."),
    (
        "user",
        "Summarize this note for the team: the nightly build failed twice this week because "
        "the cache server ran out of disk. We moved old artifacts to cold storage, added an "
        "alert at 85% usage and will review the retention policy on Thursday.",
    ),
    (
        "assistant",
        "The nightly build failed twice when the cache server's disk filled up. Old "
        "artifacts now live in cold storage, an alert fires at 85% usage, and the retention "
        "policy is up for review on Thursday.",
    ),
    (
        "user",
        "Extract the name, city and order total as JSON: Maria Lopez from Porto paid 42.50 EUR.",
    ),
    (
        "assistant",
        '{"name": "Maria Lopez", "city": "Porto", "order_total": 42.5, "currency": "EUR"}',
    ),
    ("user", "Fix the bug in this JavaScript: function last(xs) { return xs[xs.length]; }"),
    (
        "assistant",
        "Arrays are indexed from zero, so the last element is at length - 1:\n\n"
        "function last(xs) {\n  return xs[xs.length - 1];\n}",
    ),
    ("user", "List four planets in order from the Sun, with one fact each."),
    (
        "assistant",
        "1. Mercury: a year there lasts 88 Earth days.\n2. Venus: the hottest planet, at about "
        "465 °C.\n3. Earth: the only planet known to hold liquid water on its surface.\n"
        "4. Mars: home to Olympus Mons, the tallest volcano in the solar system.",
    ),
)


def calibration_activations(
    fp32_model: Path, kv: KVContract, calibration: Sequence[Sequence[int]]
) -> dict[str, np.ndarray]:
    """Each weight MatMul's activation over the `calibration` texts (token ids, each run alone
    with an empty KV cache) through the fp32 graph `fp32_model`: activation name → `[rows,
    channels]`, at most `CALIBRATION_ROWS` rows."""
    import onnx  # the prepare extra's; serving never needs it

    graph = onnx.load(str(fp32_model), load_external_data=False)
    names = sorted({node.input[0] for node in weight_matmuls(graph)})
    for name in names:
        graph.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    # Saved beside the model, so its external weights resolve: the probe is the graph alone.
    probe = fp32_model.with_name(f".{fp32_model.stem}.calibration.onnx")
    onnx.save(graph, str(probe))
    try:
        session = cpu_session(probe)
    finally:
        probe.unlink(missing_ok=True)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for token_ids in calibration:
        values = session.run(names, prompt_feeds(session, kv, token_ids, fp32_model))
        for name, value in zip(names, values, strict=True):
            rows[name].append(np.asarray(value, np.float32).reshape(-1, value.shape[-1]))
    return {name: np.concatenate(found)[:CALIBRATION_ROWS] for name, found in rows.items()}


def weight_matmuls(model: Any) -> list[Any]:
    """The MatMul nodes of `model` (an `onnx.ModelProto`) whose second input is a constant."""
    constants = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in constants]


def smooth(
    model: Any, activations: Mapping[str, np.ndarray], alphas: Sequence[float] = ALPHAS
) -> dict[str, float]:
    """Apply SmoothQuant to `model` (an `onnx.ModelProto` with its weights loaded) in place,
    from `calibration_activations`: each activation with the alpha of `alphas` whose
    simulated int8 rounding errs least; the alpha chosen for each activation smoothed."""
    weights = _Weights(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    readers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    chosen: dict[str, float] = {}
    divisions: dict[str, Any] = {}  # activation → the Mul that divides it
    for x, rows in activations.items():
        users = readers.get(x, [])
        producer = producers.get(x)
        if producer is None or not users:
            continue
        if not all(n.op_type == "MatMul" and weights.holds(n.input[1]) and n.input[0] == x
                   for n in users):  # fmt: skip
            continue
        matrices = [weights.read(n.input[1]) for n in users]
        seen = np.maximum(np.abs(rows).max(axis=0), _FLOOR)
        row_max = np.maximum(np.max([np.abs(w).max(axis=1) for w in matrices], axis=0), _FLOOR)
        alpha = _best_alpha(rows, matrices, seen, row_max, alphas)
        if alpha == 0:
            continue
        factors = _factors(seen, row_max, alpha)
        fold = _fold(producer, x, seen.size, producers, readers, weights) or _divide(
            model, x, divisions
        )
        fold(factors)
        for node in users:
            weights.scale_rows(node, factors)
            if x in divisions:
                node.input[0] = divisions[x].output[0]
        chosen[x] = alpha
    if divisions:  # each Mul goes right after its activation's producer: nodes stay sorted
        nodes = []
        for node in model.graph.node:
            nodes.append(node)
            nodes += [divisions[out] for out in node.output if out in divisions]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return chosen


def _best_alpha(
    rows: np.ndarray,
    matrices: Sequence[np.ndarray],
    seen: np.ndarray,
    row_max: np.ndarray,
    alphas: Sequence[float],
) -> float:
    """The alpha whose smoothing, rounded as the prefill graph rounds, gives the products
    `rows @ W` with the least relative squared error, summed over `matrices`."""
    exact = [rows @ w for w in matrices]

    def error(alpha: float) -> float:
        factors = _factors(seen, row_max, alpha) if alpha else np.ones_like(seen)
        quantized = _round_int8(rows / factors, axis=1, floor=1e-8)
        return sum(
            float(np.sum((quantized @ _round_int8(w * factors[:, None], axis=0) - e) ** 2))
            / max(float(np.sum(e**2)), 1e-30)
            for w, e in zip(matrices, exact, strict=True)
        )

    return min(alphas, key=error)


def _round_int8(x: np.ndarray, axis: int, floor: float = 1e-12) -> np.ndarray:
    """`x` rounded to symmetric int8 with one scale per row (axis 1: activations) or per
    column (axis 0: weights), as the prefill graph rounds them, and scaled back."""
    scale = np.maximum(np.abs(x).max(axis=axis, keepdims=True), floor) / 127
    result: np.ndarray = np.clip(np.round(x / scale), -127, 127) * scale
    return result


class _Weights:
    """The graph's initializers, read and rewritten; a weight read by several nodes is
    copied before it is changed for one of them."""

    def __init__(self, model: Any) -> None:
        self.graph = model.graph
        self.by_name = {i.name: i for i in model.graph.initializer}
        self.reads: dict[str, int] = {}
        for node in model.graph.node:
            for name in node.input:
                self.reads[name] = self.reads.get(name, 0) + 1

    def holds(self, name: str) -> bool:
        return name in self.by_name

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.by_name[name].dims)

    def read(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.by_name[name]).astype(np.float32)

    def write(self, node: Any, index: int, value: np.ndarray) -> None:
        """Set `node`'s input `index` to `value`, in a weight of its own if it was shared."""
        from onnx import numpy_helper

        name = node.input[index]
        if self.reads[name] > 1:
            self.reads[name] -= 1
            name = f"{name}/smoothed/{node.output[0]}"
            node.input[index] = name
            self.reads[name] = 1
            self.by_name[name] = self.graph.initializer.add()
        self.by_name[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

    def scale_rows(self, node: Any, factors: np.ndarray) -> None:
        self.write(node, 1, self.read(node.input[1]) * factors[:, None])

    def scale_columns(self, node: Any, factors: np.ndarray) -> None:
        self.write(node, 1, self.read(node.input[1]) / factors[None, :])


_Fold = Callable[[np.ndarray], None]
"""Divides an activation by the factors given, inside its producer or after it."""


def _factors(seen: np.ndarray, row_max: np.ndarray, alpha: float) -> np.ndarray:
    result: np.ndarray = seen**alpha / row_max ** (1 - alpha)
    return result


def _divide(model: Any, x: str, divisions: dict[str, Any]) -> _Fold:
    """A Mul that divides `x` by the factors, recorded in `divisions` for `smooth` to place
    (and to feed to `x`'s readers in its place)."""
    from onnx import helper, numpy_helper

    def by_mul(factors: np.ndarray) -> None:
        inverse = numpy_helper.from_array((1 / factors).astype(np.float32), f"{x}/smoothing")
        model.graph.initializer.append(inverse)
        divisions[x] = helper.make_node("Mul", [x, inverse.name], [f"{x}/smoothed"])

    return by_mul


def _fold(
    producer: Any,
    x: str,
    channels: int,
    producers: Mapping[str, Any],
    readers: Mapping[str, list[Any]],
    weights: _Weights,
) -> _Fold | None:
    """How to divide `x` by the factors inside `producer` (a function that rewrites it);
    None where `producer` cannot take them."""
    op = producer.op_type
    if op in ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"):
        gamma = 1 if op == "SimplifiedLayerNormalization" else 2
        if producer.output[0] == x and weights.holds(producer.input[gamma]):
            return _into_constant(producer, gamma, weights)
        return None
    if op != "Mul":
        return None
    for index, name in enumerate(producer.input):
        # x = y * c, a per-channel constant (a hand-written norm's scale): divide c.
        if weights.holds(name) and weights.shape(name) == (channels,):
            return _into_constant(producer, index, weights)
    for name in producer.input:
        # x = a * (y @ W), the MLP's gated product: divide W's columns.
        source = producers.get(name)
        if (source is not None and source.op_type == "MatMul"
                and weights.holds(source.input[1]) and len(readers[name]) == 1):  # fmt: skip
            return _into_columns(source, weights)
    return None


def _into_constant(node: Any, index: int, weights: _Weights) -> _Fold:
    return lambda factors: weights.write(node, index, weights.read(node.input[index]) / factors)


def _into_columns(matmul: Any, weights: _Weights) -> _Fold:
    return lambda factors: weights.scale_columns(matmul, factors)
