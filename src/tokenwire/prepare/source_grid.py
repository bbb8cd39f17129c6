"""A graph pass: encode an fp32 graph's MatMul weights on the GGUF source's own 4-bit grid.

A Q4_1 GGUF stores each block of 32 weights as `d * q + m` with 4-bit codes `q` and float
`d`, `m`. Converted to fp32, the weights still lie exactly on that grid, so 4-bit blocks can
hold them without a second rounding, which is what wrecks a re-quantized int4 build (top-1
agreement 0.74 against fp32 for the builder's int4 of SmolLM2). One catch: `MatMulNBits`
takes integer zero points only (a float one makes ORT dequantize on every run: far
slower), and `m / d` is rarely an integer. Rounding it shifts a whole block by up to half a
step. That shift, `r = d * (round(-m/d) + m/d)` per block and output, times the block's sum of
inputs, is what is lost. It is put back inside the same `MatMulNBits`: the input gains one
column per block holding that block's sum (a small fp32 MatMul with a 0/1 matrix), and the
weights gain the matching rows of `r`, themselves 4-bit. The output then matches fp32 as
closely as int8 weights do; the per-token cost is two small nodes per distinct input.

Matrices off a 4-bit grid (the Q8_0 token embedding, which is also the tied output
projection here, or anything else) get 8-bit blocks, which hold a Q8_0 grid exactly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

BLOCK = 32
_LEVELS = 15  # 4-bit codes 0..15
# A block is on a 4-bit grid when every weight sits within this fraction of a step of it:
# fp32 rounding of `d * q + m` is about 1e-7 of a step; anything else is off grid.
_GRID_TOLERANCE = 1e-3
_ACCURACY_LEVEL = 4  # int8 activations: MLAS's fast CPU kernels
_PREFIX = "/tokenwire/source_grid"

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class GridEncoding:
    """How many MatMul weights went to which encoding."""

    bits: Counter[int] = field(default_factory=Counter)

    @property
    def on_grid(self) -> int:
        return self.bits[4]


@dataclass(frozen=True, slots=True)
class QuantizedBlocks:
    """MatMulNBits initializers for one weight matrix: codes, scales, packed zero points."""

    codes: npt.NDArray[np.uint8]  # [N, blocks, BLOCK] unpacked
    scales: npt.NDArray[np.float32]  # [N, blocks]
    zero_points: npt.NDArray[np.uint8] | None  # [N, blocks] unpacked; None: symmetric 8-bit


def recover_4bit_grid(w_t: FloatArray) -> tuple[QuantizedBlocks, FloatArray] | None:
    """Codes and integer zero points of `w_t` ([N, K]) on its 4-bit block grid, and the
    per-block shift `r` ([N, blocks]) that rounding the zero points lost; None if off grid.
    """
    n, k = w_t.shape
    blocks = w_t.reshape(n, k // BLOCK, BLOCK)
    low, high = blocks.min(axis=-1), blocks.max(axis=-1)
    step = np.where(high > low, (high - low) / _LEVELS, 1.0)
    exact = (blocks - low[..., None]) / step[..., None]
    codes = np.rint(exact)
    if np.abs(exact - codes).max(initial=0.0) > _GRID_TOLERANCE:
        return None
    zero_exact = -low / step
    zero = np.clip(np.rint(zero_exact), 0, _LEVELS)
    # w = step * (q - zero_exact) = step * (q - zero) + step * (zero - zero_exact)
    shift = step * (zero - zero_exact)
    return (
        QuantizedBlocks(codes.astype(np.uint8), step.astype(np.float32), zero.astype(np.uint8)),
        shift,
    )


def quantize_4bit(values: FloatArray) -> QuantizedBlocks:
    """Round-to-nearest asymmetric 4-bit blocks of `values` ([N, K], K a multiple of BLOCK),
    the range stretched to hold 0 so zero rows stay exactly zero."""
    n, k = values.shape
    blocks = values.reshape(n, k // BLOCK, BLOCK)
    low = np.minimum(blocks.min(axis=-1), 0.0)
    high = np.maximum(blocks.max(axis=-1), 0.0)
    step = np.where(high > low, (high - low) / _LEVELS, 1.0)
    zero = np.clip(np.rint(-low / step), 0, _LEVELS)
    codes = np.clip(np.rint(blocks / step[..., None]) + zero[..., None], 0, _LEVELS)
    return QuantizedBlocks(codes.astype(np.uint8), step.astype(np.float32), zero.astype(np.uint8))


def quantize_8bit(w_t: FloatArray) -> QuantizedBlocks:
    """Symmetric 8-bit blocks of `w_t` ([N, K]): exact for a Q8_0 grid."""
    n, k = w_t.shape
    blocks = w_t.reshape(n, k // BLOCK, BLOCK)
    amax = np.abs(blocks).max(axis=-1)
    step = np.where(amax > 0, amax / 127.0, 1.0)
    codes = np.clip(np.rint(blocks / step[..., None]), -127, 127) + 128
    return QuantizedBlocks(codes.astype(np.uint8), step.astype(np.float32), None)


def _pack(codes: npt.NDArray[np.uint8], bits: int) -> npt.NDArray[np.uint8]:
    """MatMulNBits packing: along the last axis, low nibble first for 4 bits."""
    if bits == 8:
        return codes
    if codes.shape[-1] % 2:
        codes = np.concatenate([codes, np.zeros((*codes.shape[:-1], 1), np.uint8)], axis=-1)
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def encode_on_source_grid(source: Path, target: Path) -> GridEncoding:
    """Write `target` (+ `.data`): the fp32 graph `source` with every MatMul on an initializer
    replaced by a `MatMulNBits` on the weights' own grid (see the module docstring)."""
    import onnx  # the prepare extra's; serving never needs it
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    nodes: list[Any] = []
    added: list[Any] = []
    augmented: dict[str, str] = {}  # input name -> input with block sums appended
    indicators: dict[int, str] = {}  # K -> its 0/1 block-sum matrix, shared by every input
    encoding = GridEncoding()

    def add(array: npt.NDArray[Any], name: str) -> str:
        added.append(numpy_helper.from_array(array, name))
        return name

    def with_block_sums(x: str, k: int) -> str:
        if x not in augmented:
            if k not in indicators:
                matrix = np.zeros((k, _round_up(k // BLOCK)), np.float32)
                for b in range(k // BLOCK):
                    matrix[b * BLOCK : (b + 1) * BLOCK, b] = 1.0
                indicators[k] = add(matrix, f"{_PREFIX}/block_sums_{k}")
            indicator = indicators[k]
            sums = f"{_PREFIX}{x}/block_sums"
            nodes.append(helper.make_node("MatMul", [x, indicator], [sums], name=sums))
            augmented[x] = f"{_PREFIX}{x}/with_block_sums"
            nodes.append(
                helper.make_node("Concat", [x, sums], [augmented[x]], name=augmented[x], axis=-1)
            )
        return augmented[x]

    for node in graph.node:
        if node.op_type == "Transpose" and node.input[0] in initializers:
            # The tied embedding reads the output projection's fp32 weights transposed: store
            # them that way rather than have ORT fold a second 113 MB copy at every load.
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            folded = np.transpose(numpy_helper.to_array(initializers[node.input[0]]), perm)
            add(np.ascontiguousarray(folded), node.output[0])
            continue
        weight = initializers.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or weight.dims[0] % BLOCK:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight).astype(np.float64)  # [K, N]
        k, n = w.shape
        recovered = recover_4bit_grid(w.T)
        x, base = node.input[0], f"{_PREFIX}/{weight.name}"
        if recovered is None:
            blocks, bits, x_in, k_in = quantize_8bit(w.T), 8, x, k
        else:
            grid, shift = recovered
            width = _round_up(k // BLOCK)
            padded = np.zeros((n, width))
            padded[:, : shift.shape[1]] = shift
            extra = quantize_4bit(padded)
            blocks = QuantizedBlocks(
                np.concatenate([grid.codes, extra.codes], axis=1),
                np.concatenate([grid.scales, extra.scales], axis=1),
                np.concatenate([grid.zero_points, extra.zero_points], axis=1),
            )
            bits, x_in, k_in = 4, with_block_sums(x, k), k + width
        encoding.bits[bits] += 1
        inputs = [
            x_in,
            add(_pack(blocks.codes, bits), f"{base}/q{bits}"),
            add(blocks.scales.reshape(-1), f"{base}/scales"),
        ]
        if blocks.zero_points is not None:
            zero_points = _pack(blocks.zero_points, bits).reshape(-1)
            inputs.append(add(zero_points, f"{base}/zero_points"))
        attributes = {"K": k_in, "N": n, "bits": bits, "block_size": BLOCK}
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                inputs,
                list(node.output),
                name=f"{node.name}_Q{bits}",
                domain="com.microsoft",
                accuracy_level=_ACCURACY_LEVEL,
                **attributes,
            )
        )
    used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    del graph.node[:]
    graph.node.extend(nodes)
    if all(op.domain != "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(target), save_as_external_data=True, location=f"{target.name}.data")
    return encoding


def _round_up(count: int) -> int:
    return -(-count // BLOCK) * BLOCK
