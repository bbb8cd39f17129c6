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
the decode graph shares and reads unscaled. The maxima come from calibration text run through the fp32 graph. On SmolLM2-135M
(docs/benchmarks.md) it raised teacher-forced top-1 agreement with fp32 from 0.92 to 0.97
on a chat and from 0.86 to 0.91 on a README, with mean KL a third of before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.prepare.quality import cpu_session, prompt_feeds

ALPHA = 0.6
"""How much of the outliers' range moves into the weights. On SmolLM2-135M, over the
prompt positions of 50 chats, mean KL to fp32 was 0.096–0.099 unsmoothed, 0.038–0.041 at
0.5, 0.033–0.035 at 0.6, 0.036–0.039 at 0.7 and 0.088–0.095 at 0.8 (docs/benchmarks.md)."""

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


def activation_maxima(
    fp32_model: Path, kv: KVContract, calibration: Sequence[Sequence[int]]
) -> dict[str, np.ndarray]:
    """The largest |value| of each input channel of each weight MatMul's activation, over
    the `calibration` texts (token ids, each run alone with an empty KV cache) through the
    fp32 graph `fp32_model`: activation name → `[channels]`."""
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
    maxima: dict[str, np.ndarray] = {}
    for token_ids in calibration:
        values = session.run(names, prompt_feeds(session, kv, token_ids, fp32_model))
        for name, value in zip(names, values, strict=True):
            seen = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            maxima[name] = np.maximum(maxima[name], seen) if name in maxima else seen
    return maxima


def weight_matmuls(model: Any) -> list[Any]:
    """The MatMul nodes of `model` (an `onnx.ModelProto`) whose second input is a constant."""
    constants = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in constants]


def smooth(model: Any, maxima: Mapping[str, np.ndarray], alpha: float = ALPHA) -> int:
    """Apply SmoothQuant to `model` (an `onnx.ModelProto` with its weights loaded) in place,
    from `activation_maxima`; the number of activations smoothed."""
    weights = _Weights(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    readers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    smoothed = 0
    divisions: dict[str, Any] = {}  # activation → the Mul that divides it
    for x, seen in maxima.items():
        users = readers.get(x, [])
        producer = producers.get(x)
        if producer is None or not users:
            continue
        if not all(n.op_type == "MatMul" and weights.holds(n.input[1]) and n.input[0] == x
                   for n in users):  # fmt: skip
            continue
        fold = _fold(producer, x, seen.size, producers, readers, weights) or _divide(
            model, x, divisions
        )
        row_max = np.max([np.abs(weights.read(n.input[1])).max(axis=1) for n in users], axis=0)
        factors = fold(np.maximum(seen, _FLOOR), np.maximum(row_max, _FLOOR), alpha)
        for node in users:
            weights.scale_rows(node, factors)
            if x in divisions:
                node.input[0] = divisions[x].output[0]
        smoothed += 1
    if divisions:  # each Mul goes right after its activation's producer: nodes stay sorted
        nodes = []
        for node in model.graph.node:
            nodes.append(node)
            nodes += [divisions[out] for out in node.output if out in divisions]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return smoothed


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


_Fold = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
"""(activation maxima, weight row maxima, alpha) → the factors, the producer rewritten."""


def _factors(seen: np.ndarray, row_max: np.ndarray, alpha: float) -> np.ndarray:
    result: np.ndarray = seen**alpha / row_max ** (1 - alpha)
    return result


def _divide(model: Any, x: str, divisions: dict[str, Any]) -> _Fold:
    """A Mul that divides `x` by the factors, recorded in `divisions` for `smooth` to place
    (and to feed to `x`'s readers in its place)."""
    from onnx import helper, numpy_helper

    def by_mul(seen: np.ndarray, row_max: np.ndarray, alpha: float) -> np.ndarray:
        factors = _factors(seen, row_max, alpha)
        inverse = numpy_helper.from_array((1 / factors).astype(np.float32), f"{x}/smoothing")
        model.graph.initializer.append(inverse)
        divisions[x] = helper.make_node("Mul", [x, inverse.name], [f"{x}/smoothed"])
        return factors

    return by_mul


def _fold(
    producer: Any,
    x: str,
    channels: int,
    producers: Mapping[str, Any],
    readers: Mapping[str, list[Any]],
    weights: _Weights,
) -> _Fold | None:
    """How to divide `x` by the factors inside `producer`: a function from the maxima to
    the factors that also rewrites the producer; None where `producer` cannot take them."""
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
    def fold(seen: np.ndarray, row_max: np.ndarray, alpha: float) -> np.ndarray:
        factors = _factors(seen, row_max, alpha)
        weights.write(node, index, weights.read(node.input[index]) / factors)
        return factors

    return fold


def _into_columns(matmul: Any, weights: _Weights) -> _Fold:
    def fold(seen: np.ndarray, row_max: np.ndarray, alpha: float) -> np.ndarray:
        factors = _factors(seen, row_max, alpha)
        weights.scale_columns(matmul, factors)
        return factors

    return fold
