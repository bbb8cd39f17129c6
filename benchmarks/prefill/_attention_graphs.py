"""The graphs `benchmarks.prefill.attention` times: one layer's attention, built to the
model's own GroupQueryAttention attributes and Q/K/V layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from tokenwire.backends.onnx.manifest import ModelManifest

F32 = TensorProto.FLOAT


@dataclass(frozen=True, slots=True)
class Shape:
    """The model's attention, read from its first GroupQueryAttention node."""

    heads: int
    kv_heads: int
    head: int
    scale: float
    packed: bool
    attrs: dict[str, Any]
    rotary_rows: int
    layers: int
    max_context: int


def read_shape(model: Path, max_context: int | None) -> Shape:
    manifest = ModelManifest.read(model)
    proto = onnx.load(str(model / manifest.model_file), load_external_data=False)
    node = next(n for n in proto.graph.node if n.op_type == "GroupQueryAttention")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    cos = next(t for t in proto.graph.initializer if t.name == node.input[7])
    head = manifest.kv.head_size
    return Shape(
        heads=int(attrs["num_heads"]), kv_heads=int(attrs["kv_num_heads"]), head=head,
        scale=float(attrs.get("scale") or head**-0.5), packed=node.input[1] == "",
        attrs=attrs, rotary_rows=int(cos.dims[0]), layers=manifest.kv.num_layers,
        max_context=max_context or manifest.kv.max_context,
    )  # fmt: skip


def _model(nodes: list[onnx.NodeProto], inputs: list[Any], outputs: list[Any],
           inits: list[onnx.TensorProto], opset: int = 24) -> bytes:  # fmt: skip
    graph = helper.make_graph(nodes, "attention", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    model: bytes = helper.make_model(graph, opset_imports=opsets, ir_version=10).SerializeToString()
    return model


def _io(name: str, dims: list[Any], kind: int = F32) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, kind, dims)


def _const(name: str, values: list[int] | np.ndarray) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values))


def _qkv_inputs(s: Shape) -> tuple[list[onnx.ValueInfoProto], list[str]]:
    """The model's Q/K/V inputs: packed `[B, S, (H + 2 KV) D]`, or three tensors."""
    if s.packed:
        return [_io("qkv", ["b", "s", (s.heads + 2 * s.kv_heads) * s.head])], ["qkv", "", ""]
    dims = [s.heads * s.head, s.kv_heads * s.head, s.kv_heads * s.head]
    return [_io(n, ["b", "s", d]) for n, d in zip("qkv", dims, strict=True)], ["q", "k", "v"]


def gqa_graph(s: Shape, rotary: bool = True) -> bytes:
    inputs, qkv = _qkv_inputs(s)
    kv = ["b", s.kv_heads, "t", s.head]
    attrs = dict(s.attrs, do_rotary=int(rotary))
    node = helper.make_node(
        "GroupQueryAttention",
        [*qkv, "past_key", "past_value", "seqlens_k", "total", "cos_cache", "sin_cache"],
        ["out", "present_key", "present_value"], domain="com.microsoft", **attrs)  # fmt: skip
    inputs += [_io("past_key", kv), _io("past_value", kv),
               _io("seqlens_k", ["b"], TensorProto.INT32), _io("total", [], TensorProto.INT32),
               _io("cos_cache", [s.rotary_rows, s.head // 2]),
               _io("sin_cache", [s.rotary_rows, s.head // 2])]  # fmt: skip
    outputs = [_io("out", ["b", "s", s.heads * s.head]), _io("present_key", kv),
               _io("present_value", kv)]  # fmt: skip
    return _model([node], inputs, outputs, [])


def _split_heads(s: Shape, nodes: list[onnx.NodeProto]) -> list[str]:
    """Q, K, V as BNSH tensors `[B, heads, S, D]` from the model's layout."""
    if s.packed:
        nodes.append(helper.make_node("Split", ["qkv", "split"], ["q", "k", "v"], axis=2))
    names = []
    for name in "qkv":
        nodes.append(helper.make_node("Reshape", [name, f"shape_{name}"], [f"{name}4"]))
        nodes.append(helper.make_node("Transpose", [f"{name}4"], [f"{name}h"], perm=[0, 2, 1, 3]))
        names.append(f"{name}h")
    return names


def plain_graph(s: Shape, *, grouped: bool, scatter: bool) -> bytes:
    """Attention from plain ops. `past_key`/`past_value`: the shared buffer `[B, KV, M, D]`;
    `past`: how many positions it holds. With `scatter`, the new K/V are written into it in
    place (`TensorScatter`, outputs bound to the same memory) and read back from it; without,
    they are returned as `new_key`/`new_value` and only the past is read from the buffer."""
    group = s.heads // s.kv_heads
    inputs, _ = _qkv_inputs(s)
    kv = ["b", s.kv_heads, "m", s.head]
    inputs += [_io("past_key", kv), _io("past_value", kv), _io("mask", ["b", 1, "s", "t"]),
               _io("past", [1], TensorProto.INT64), _io("total", [1], TensorProto.INT64)]  # fmt: skip
    inits = [_const("split", [s.heads * s.head, s.kv_heads * s.head, s.kv_heads * s.head]),
             _const("shape_q", [0, 0, s.heads, s.head]), _const("shape_k", [0, 0, s.kv_heads, s.head]),
             _const("shape_v", [0, 0, s.kv_heads, s.head]), _const("zero", [0]), _const("axis2", [2]),
             _const("out_shape", [0, 0, s.heads * s.head]),
             helper.make_tensor("scale", F32, [], [s.scale])]  # fmt: skip
    nodes: list[onnx.NodeProto] = []
    q, k, v = _split_heads(s, nodes)
    outputs = [_io("out", ["b", "s", s.heads * s.head])]
    full: dict[str, str] = {}
    for name, new, past in (("k", k, "past_key"), ("v", v, "past_value")):
        if scatter:
            nodes.append(helper.make_node("TensorScatter", [past, new, "past_b"],
                                          [f"present_{name}"], axis=2))  # fmt: skip
            outputs.append(_io(f"present_{name}", kv))
            nodes.append(helper.make_node("Slice", [f"present_{name}", "zero", "total", "axis2"],
                                          [f"{name}_all"]))  # fmt: skip
        else:
            nodes.append(helper.make_node("Slice", [past, "zero", "past", "axis2"],
                                          [f"{name}_past"]))  # fmt: skip
            nodes.append(helper.make_node("Concat", [f"{name}_past", new], [f"{name}_all"], axis=2))
            nodes.append(helper.make_node("Identity", [new], [f"new_{name}"]))
            outputs.append(_io(f"new_{name}", ["b", s.kv_heads, "s", s.head]))
        full[name] = f"{name}_all"
    if scatter:  # one write index per row: every row holds `past` positions
        nodes.append(helper.make_node("Shape", ["qkv" if s.packed else "q"], ["qshape"], end=1))
        nodes.append(helper.make_node("Expand", ["past", "qshape"], ["past_b"]))
    nodes.append(helper.make_node("Mul", [q, "scale"], ["qs"]))
    if grouped:  # [B, KV, group*S, D] · [B, KV, D, T]: no copy of K or V per query head
        inits += [_const("grouped", [0, s.kv_heads, -1, s.head]),
                  _const("grouped_probs", [0, s.kv_heads, -1, 0]),
                  _const("scores_shape", [0, s.heads, -1, 0])]  # fmt: skip
        nodes += [helper.make_node("Reshape", ["qs", "grouped"], ["qg"]),
                  helper.make_node("Transpose", [full["k"]], ["kt"], perm=[0, 1, 3, 2]),
                  helper.make_node("MatMul", ["qg", "kt"], ["sg"]),
                  helper.make_node("Reshape", ["sg", "scores_shape"], ["scores"])]  # fmt: skip
        values = full["v"]
    else:  # the KV heads repeated to every query head, as a graph without GQA must
        inits += [_const("rep5", [1, 1, group, 1, 1]),
                  _const("rep4", [0, s.heads, -1, s.head])]  # fmt: skip
        for name in ("k", "v"):
            nodes += [helper.make_node("Unsqueeze", [full[name], "axis2"], [f"{name}5"]),
                      helper.make_node("Tile", [f"{name}5", "rep5"], [f"{name}r5"]),
                      helper.make_node("Reshape", [f"{name}r5", "rep4"], [f"{name}r"])]  # fmt: skip
        nodes += [helper.make_node("Transpose", ["kr"], ["kt"], perm=[0, 1, 3, 2]),
                  helper.make_node("MatMul", ["qs", "kt"], ["scores"])]  # fmt: skip
        values = "vr"
    nodes += [helper.make_node("Add", ["scores", "mask"], ["masked"]),
              helper.make_node("Softmax", ["masked"], ["probs"], axis=-1)]  # fmt: skip
    if grouped:
        nodes += [helper.make_node("Reshape", ["probs", "grouped_probs"], ["pg"]),
                  helper.make_node("MatMul", ["pg", values], ["og"]),
                  helper.make_node("Reshape", ["og", "scores_shape"], ["ctx"])]  # fmt: skip
    else:
        nodes.append(helper.make_node("MatMul", ["probs", values], ["ctx"]))
    nodes += [helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ctx_t", "out_shape"], ["out"])]  # fmt: skip
    return _model(nodes, inputs, outputs, inits)


def fused_graph(s: Shape, op: str, past: int) -> bytes:
    """`MultiHeadAttention` (KV repeated to every head) or ONNX `Attention` (GQA-aware),
    causal, on Q/K/V that already hold the past: what each kernel costs, KV cache aside."""
    group = s.heads // s.kv_heads
    inputs = [_io("q", ["b", "s", s.heads * s.head]), _io("k", ["b", "t", s.kv_heads * s.head]),
              _io("v", ["b", "t", s.kv_heads * s.head])]  # fmt: skip
    nodes: list[onnx.NodeProto] = []
    inits = [_const("rep", [0, 0, s.kv_heads, 1, s.head]), _const("tile", [1, 1, 1, group, 1]),
             _const("flat", [0, 0, s.heads * s.head])]  # fmt: skip
    causal = int(past == 0)  # a decode row sees every past position: no mask needed
    if op == "MultiHeadAttention":
        for name in ("k", "v"):
            nodes += [helper.make_node("Reshape", [name, "rep"], [f"{name}5"]),
                      helper.make_node("Tile", [f"{name}5", "tile"], [f"{name}r5"]),
                      helper.make_node("Reshape", [f"{name}r5", "flat"], [f"{name}r"])]  # fmt: skip
        nodes.append(helper.make_node("MultiHeadAttention", ["q", "kr", "vr"], ["out"],
                                      domain="com.microsoft", num_heads=s.heads,
                                      scale=s.scale, unidirectional=causal))  # fmt: skip
    else:
        nodes.append(helper.make_node("Attention", ["q", "k", "v"], ["out"], is_causal=causal,
                                      q_num_heads=s.heads, kv_num_heads=s.kv_heads,
                                      scale=s.scale))  # fmt: skip
    return _model(nodes, inputs, [_io("out", ["b", "s", s.heads * s.head])], inits)
