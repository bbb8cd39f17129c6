"""The prefill graph: the fp32 build with every weight MatMul on ONNX Runtime's u8s8 GEMM.

MatMulNBits (the int8 decode graph's kernel) is the fastest for the few rows of a decode
step, but it does not use AMX: on a Sapphire Rapids Xeon a 545-token prefill spent 70% of
its time there, no faster than fp32. ONNX Runtime's MatMulInteger (u8 activations, s8
weights) runs on MLAS's AMX/VNNI integer GEMM, about 2× faster for a prompt chunk of 32
tokens or more (docs/benchmarks.md, "Prefill and batch throughput").

Each activation is quantized per row (per token), symmetrically, into u8 around a zero
point of 128: `quantize_dynamic`'s one scale per tensor lets a few outlier tokens wash out
the rest (teacher-forced top-1 agreement with fp32 0.54 on a 545-token text), one scale per
row keeps it usable, and SmoothQuant (`smoothing`, from calibration text) first moves the
outlier channels' range into the weights. Weights are int8 per output column. The graph
takes and returns the same KV tensors as the decode graph, so both write one shared KV
buffer: the backend runs prompt chunks here (and, if asked, batched decode steps), and the
other decode steps on the decode graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.prepare.last_logits import slice_last_position
from tokenwire.prepare.smoothing import calibration_activations, smooth

PREFILL_MODEL_FILE = "model.prefill-smoothed.onnx"
"""Named for how it is built: a build whose manifest names another prefill graph (the
unsmoothed `model.prefill.onnx` of earlier versions) is rebuilt when one is asked for."""

_P = "/tokenwire/row_int8"
# Symmetric int8 values stored as u8 around this zero point: ORT's fast integer GEMM takes
# u8 activations, and a per-tensor zero point is all MatMulInteger accepts.
_ZERO_POINT = 128


def build_prefill_graph(
    fp32_model: Path,
    out_model: Path,
    kv: KVContract | None = None,
    calibration: Sequence[Sequence[int]] = (),
) -> int:
    """Write the prefill graph of the builder's fp32 `fp32_model` to `out_model` (weights in
    `out_model` + `.data`), logits for the last position only; the MatMuls rewritten.

    With `calibration` texts (token ids) and the graph's `kv` contract, the activations are
    smoothed first (`smoothing`); without, they are quantized as they come."""
    import onnx  # the prepare extra's; serving never needs it

    model = onnx.load(str(fp32_model))
    if calibration:
        if kv is None:
            raise ValueError("calibrating the prefill graph needs the model's KV contract")
        smooth(model, calibration_activations(fp32_model, kv, calibration))
    slice_last_position(model)
    rewritten = quantize_rows(model)
    save_beside(model, out_model)
    return rewritten


def save_beside(model: Any, out_model: Path) -> None:
    """Save `model` (an `onnx.ModelProto`) to `out_model`, its weights in `out_model` +
    `.data` beside it (a graph over 2 GB cannot be one protobuf)."""
    import onnx

    onnx.save(
        model,
        str(out_model),
        save_as_external_data=True,
        location=out_model.name + ".data",
        size_threshold=1024,
    )


def quantize_rows(model: Any) -> int:
    """Rewrite each MatMul of `model` (a loaded `onnx.ModelProto`, opset 21 or later) whose
    second input is a constant `[K, N]` weight, in place; the number rewritten."""
    from onnx import TensorProto, helper, numpy_helper

    if _opset(model) < 21:
        raise ValueError(f"the prefill graph needs opset 21 or later, got {_opset(model)}")
    graph = model.graph
    constants = {i.name: i for i in graph.initializer}
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(1e-8, np.float32), f"{_P}/eps"),
            numpy_helper.from_array(np.array(127.0, np.float32), f"{_P}/levels"),
            numpy_helper.from_array(np.array(_ZERO_POINT, np.uint8), f"{_P}/zero_point"),
            numpy_helper.from_array(np.array([-1], np.int64), f"{_P}/last_axis"),
        ]
    )
    quantized: dict[str, str] = {}  # activation name -> prefix of its quantized form
    nodes: list[Any] = []
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for node in graph.node:
        weight = constants.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)
        k = w.shape[0]
        scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
        wq = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        base = weight.name
        if uses[base] == 1:  # a tied weight (the LM head's) is still read elsewhere
            graph.initializer.remove(weight)
        graph.initializer.extend(
            [
                numpy_helper.from_array(wq, f"{base}/int8"),
                numpy_helper.from_array(scale.astype(np.float32), f"{base}/scale"),
            ]
        )
        x = node.input[0]
        if x not in quantized:
            quantized[x] = _quantize_activation(x, k, len(quantized), nodes)
        rows = quantized[x]
        # Node names can be empty (hand-made graphs); the output name is unique.
        out, p = node.output[0], f"{node.output[0]}/row_int8"
        nodes += [
            helper.make_node(
                "MatMulInteger",
                [f"{rows}/q", f"{base}/int8", f"{_P}/zero_point"],
                [f"{p}/int32"],
                name=f"{p}/MatMulInteger",
            ),
            helper.make_node("Cast", [f"{p}/int32"], [f"{p}/float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{p}/float", f"{base}/scale"], [f"{p}/by_column"]),
            helper.make_node("Mul", [f"{p}/by_column", f"{rows}/scale"], [out]),
        ]  # fmt: skip
    del graph.node[:]
    graph.node.extend(nodes)
    return sum(1 for node in nodes if node.op_type == "MatMulInteger")


def _opset(model: Any) -> int:
    return int(next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0))


def _quantize_activation(x: str, k: int, index: int, nodes: list[Any]) -> str:
    """Nodes that quantize `x` `[..., k]` per row (one block of k along its last axis) into
    `{prefix}/q` (u8, x's shape), with `{prefix}/scale` `[..., 1]`. Kept in x's shape: no
    reshapes and no shape arithmetic around each GEMM: SmolLM2's graph has 1,673 nodes
    instead of 2,459, each a kernel launch on every run, however few its rows."""
    from onnx import helper

    p = f"{_P}/{index}"
    nodes += [
        helper.make_node("Abs", [x], [f"{p}/abs"]),
        helper.make_node("ReduceMax", [f"{p}/abs", f"{_P}/last_axis"], [f"{p}/max"], keepdims=1),
        helper.make_node("Max", [f"{p}/max", f"{_P}/eps"], [f"{p}/max_eps"]),
        helper.make_node("Div", [f"{p}/max_eps", f"{_P}/levels"], [f"{p}/scale"]),
        # Blocked quantization takes a zero point of the scale's own shape.
        helper.make_node("Shape", [f"{p}/scale"], [f"{p}/rows"]),
        helper.make_node("Expand", [f"{_P}/zero_point", f"{p}/rows"], [f"{p}/zero_points"]),
        helper.make_node(
            "QuantizeLinear",
            [x, f"{p}/scale", f"{p}/zero_points"],
            [f"{p}/q"],
            axis=-1,
            block_size=k,
        ),
    ]
    return p
