"""The source-grid pass: weights on a GGUF Q4_1 grid go to 4-bit blocks without losing them.

Torch-free: small fp32 graphs built with onnx.helper, weights drawn on Q4_1 and Q8_0 grids
with numpy, run through the real ONNX Runtime before and after the pass.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tokenwire.prepare.source_grid import BLOCK, encode_on_source_grid, recover_4bit_grid

HIDDEN, FFN = 64, 96  # 2 and 3 blocks of 32


def q4_1_weights(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """A [K, N] matrix the way a Q4_1 GGUF dequantizes: `d * q + m` per block of 32 along K."""
    blocks = k // BLOCK
    codes = rng.integers(0, 16, size=(n, blocks, BLOCK)).astype(np.float32)
    codes[..., 0], codes[..., 1] = 0, 15  # Q4_1 spans its block: the extremes are 0 and 15
    step = rng.uniform(0.004, 0.02, size=(n, blocks, 1)).astype(np.float32)
    low = (-step * rng.uniform(2.0, 13.0, size=(n, blocks, 1))).astype(np.float32)
    return (step * codes + low).reshape(n, k).T.copy()


def q8_0_weights(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    blocks = k // BLOCK
    codes = rng.integers(-127, 128, size=(n, blocks, BLOCK)).astype(np.float32)
    codes[..., 0] = 127
    step = rng.uniform(1e-4, 1e-3, size=(n, blocks, 1)).astype(np.float32)
    return (step * codes).reshape(n, k).T.copy()


def write_graph(path: Path, weights: dict[str, np.ndarray]) -> None:
    """x → gate, up (sharing x) → mul → down, plus a head on x: every MatMul on an initializer."""
    nodes = [
        helper.make_node("MatMul", ["x", "gate.weight"], ["gate"], name="/gate/MatMul"),
        helper.make_node("MatMul", ["x", "up.weight"], ["up"], name="/up/MatMul"),
        helper.make_node("Mul", ["gate", "up"], ["hidden"], name="/mul"),
        helper.make_node("MatMul", ["hidden", "down.weight"], ["down"], name="/down/MatMul"),
        helper.make_node("MatMul", ["x", "head.weight"], ["head"], name="/head/MatMul"),
        helper.make_node("MatMul", ["x", "noise.weight"], ["noise"], name="/noise/MatMul"),
        # A tied embedding, as the builder writes it: the head's weights, transposed.
        helper.make_node(
            "Transpose", ["head.weight"], ["table"], name="/embed/Transpose", perm=[1, 0]
        ),
        helper.make_node("Gather", ["table", "ids"], ["embed"], name="/embed/Gather"),
    ]
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "seq", None])
        for name in ("down", "head", "noise", "embed")
    ]
    graph = helper.make_graph(
        nodes,
        "grid",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", HIDDEN]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs,
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    weights = {
        "gate.weight": q4_1_weights(rng, HIDDEN, FFN),
        "up.weight": q4_1_weights(rng, HIDDEN, FFN),
        "down.weight": q4_1_weights(rng, FFN, HIDDEN),
        "head.weight": q8_0_weights(rng, HIDDEN, 160),
        "noise.weight": rng.standard_normal((HIDDEN, 48)).astype(np.float32) * 0.05,
    }
    directory = tmp_path_factory.mktemp("grid")
    write_graph(directory / "fp32.onnx", weights)
    encode_on_source_grid(directory / "fp32.onnx", directory / "grid.onnx")
    return directory / "fp32.onnx", directory / "grid.onnx", weights


def run(path: Path, x: np.ndarray, ids: np.ndarray | None = None) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if ids is None:
        ids = np.zeros(x.shape[:2], np.int64)
    return session.run(["down", "head", "noise", "embed"], {"x": x, "ids": ids})  # type: ignore[return-value]


def test_recovers_the_codes_and_the_shift_that_rounding_the_zero_points_loses() -> None:
    w = q4_1_weights(np.random.default_rng(1), HIDDEN, 8)
    recovered = recover_4bit_grid(w.T.astype(np.float64))
    assert recovered is not None
    blocks, shift = recovered
    assert blocks.zero_points is not None
    rebuilt = (
        blocks.scales[..., None] * (blocks.codes.astype(np.float64) - blocks.zero_points[..., None])
        + shift[..., None]
    )
    np.testing.assert_allclose(rebuilt.reshape(8, HIDDEN), w.T, rtol=0, atol=1e-6)
    assert np.abs(shift).max() > 1e-4  # the test data does need the correction


def test_off_grid_weights_are_not_taken_for_a_grid() -> None:
    w = np.random.default_rng(2).standard_normal((HIDDEN, 8))
    assert recover_4bit_grid(w.T) is None


def test_each_matrix_gets_the_encoding_of_its_grid(
    graphs: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    _, grid, _ = graphs
    model = onnx.load(str(grid))
    quantized = {n.name: n for n in model.graph.node if n.op_type == "MatMulNBits"}
    bits = {
        name: next(a.i for a in n.attribute if a.name == "bits") for name, n in quantized.items()
    }
    assert bits == {
        "/gate/MatMul_Q4": 4, "/up/MatMul_Q4": 4, "/down/MatMul_Q4": 4,
        "/head/MatMul_Q8": 8, "/noise/MatMul_Q8": 8,
    }  # fmt: skip
    # gate and up share x: one block-sum column set for both, one more for down's input.
    assert Counter(n.op_type for n in model.graph.node)["Concat"] == 2
    assert not any(
        n.op_type == "MatMul" and n.input[1].endswith(".weight") for n in model.graph.node
    )


def test_grid_graph_matches_fp32_where_rounded_zero_points_alone_do_not(
    graphs: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    fp32, grid, weights = graphs
    x = np.random.default_rng(3).standard_normal((2, 5, HIDDEN)).astype(np.float32)
    want_down, want_head, want_noise, _ = run(fp32, x)
    got_down, got_head, got_noise, _ = run(grid, x)

    def error(got: np.ndarray, want: np.ndarray) -> float:
        return float(np.abs(got - want).max() / np.abs(want).max())

    # The same gate/up through weights whose zero points are merely rounded, in numpy:
    # the error the correction columns exist to remove.
    rounded = {}
    for name in ("gate.weight", "up.weight"):
        recovered = recover_4bit_grid(weights[name].T.astype(np.float64))
        assert recovered is not None
        blocks, _ = recovered
        assert blocks.zero_points is not None
        w_t = blocks.scales[..., None] * (
            blocks.codes - blocks.zero_points[..., None].astype(np.float64)
        )
        rounded[name] = (x @ w_t.reshape(FFN, HIDDEN).T).astype(np.float32)
    want_gate = x @ weights["gate.weight"]
    assert error(rounded["gate.weight"], want_gate) > 0.05

    # int8 activations (accuracy level 4) leave about 1 % at most.
    assert error(got_down, want_down) < 0.02
    assert error(got_head, want_head) < 0.02
    assert error(got_noise, want_noise) < 0.02


def test_grid_graph_keeps_batch_and_sequence_shapes(
    graphs: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    _, grid, _ = graphs
    for shape in ((1, 1, HIDDEN), (3, 7, HIDDEN)):
        down, head, noise, _ = run(grid, np.ones(shape, np.float32))
        assert down.shape == (*shape[:2], HIDDEN)
        assert head.shape == (*shape[:2], 160) and noise.shape == (*shape[:2], 48)


def test_tied_embedding_table_is_stored_transposed_and_stays_fp32(
    graphs: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    fp32, grid, _ = graphs
    assert not any(n.op_type == "Transpose" for n in onnx.load(str(grid)).graph.node)
    x = np.zeros((1, 4, HIDDEN), np.float32)
    ids = np.array([[0, 5, 159, 42]], np.int64)
    np.testing.assert_array_equal(run(grid, x, ids)[3], run(fp32, x, ids)[3])
