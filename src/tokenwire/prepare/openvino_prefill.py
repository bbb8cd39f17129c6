"""The bf16 prefill graph: the fp32 build as an OpenVINO model, run by OpenVINO in bf16.

ONNX Runtime's CPU provider has no bf16 GEMM on x86, and `MatMulNBits` (the int8 decode
graph's kernel) does not use AMX. OpenVINO's CPU plugin computes in bf16 on AMX and reads
the builder's graph, GroupQueryAttention included, as it is. The backend runs large prompt
runs on it (`prefill_graph=bf16`, `backends.onnx.openvino_prompts`) and decode steps on the
int8 graph, both over one KV buffer.

The model keeps the decode graph's KV inputs and outputs. Its logits are sliced to the last
positions as the decode graph's are, but the slice's start is an input rather than a
constant, so each run asks for the positions it needs (ONNX Runtime replaces the constant
at load instead; OpenVINO has no such hook).

It stays an ONNX file that OpenVINO reads at load (about a second): OpenVINO keeps the
builder's GroupQueryAttention as an internal op that its own model format cannot store.
Its weights are stored as fp16 with a Cast to fp32 behind each, about 270 MB, which OpenVINO
reads as compressed weights; fp16 keeps more mantissa than the bf16 they are computed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tokenwire.backends.onnx._graph_io import LAST_POSITIONS
from tokenwire.prepare.last_logits import slice_last_position
from tokenwire.prepare.prefill_graph import save_beside

OPENVINO_PREFILL_FILE = "model.prefill-bf16.onnx"
# Weights with fewer elements (norm scales, small constants) stay fp32.
_FP16_MIN_ELEMENTS = 1024


def build_openvino_prefill(fp32_model: Path, out_model: Path) -> None:
    """Write the bf16 prefill graph of the builder's fp32 `fp32_model` to `out_model`
    (weights in `out_model` + `.data`)."""
    import onnx  # the prepare extra's; serving never needs it

    model = onnx.load(str(fp32_model))
    if not any(i.name == LAST_POSITIONS for i in model.graph.initializer):
        slice_last_position(model)
    starts = next(i for i in model.graph.initializer if i.name == LAST_POSITIONS)
    model.graph.initializer.remove(starts)
    model.graph.input.append(
        onnx.helper.make_tensor_value_info(LAST_POSITIONS, onnx.TensorProto.INT64, [1])
    )
    _store_weights_as_fp16(model)
    save_beside(model, out_model)


def _store_weights_as_fp16(model: Any) -> None:
    """Replace each large fp32 initializer of `model` by an fp16 one and a Cast back to fp32
    under the old name, in place: every consumer reads what it read before."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    casts = []
    for weight in list(graph.initializer):
        if weight.data_type != TensorProto.FLOAT or np.prod(weight.dims) < _FP16_MIN_ELEMENTS:
            continue
        half = numpy_helper.from_array(
            numpy_helper.to_array(weight).astype(np.float16), f"{weight.name}/fp16"
        )
        graph.initializer.remove(weight)
        graph.initializer.append(half)
        casts.append(
            helper.make_node(
                "Cast", [half.name], [weight.name], to=TensorProto.FLOAT, name=f"{half.name}/cast"
            )
        )
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
