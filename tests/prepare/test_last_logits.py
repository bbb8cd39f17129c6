"""The last-position logits pass: same last logits, a `[batch, 1, vocab]` output, and the
backend streaming the same tokens from the trimmed graph."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tests.backends.onnx._helpers import collect, request, running
from tests.backends.onnx.tiny_models import write_model_dir
from tokenwire.backends.onnx.manifest import ModelManifest
from tokenwire.prepare.last_logits import keep_last_position_logits

LAYOUTS = ("shared", "concat")
PROMPT = "Once upon a time there was a tiny robot who"


def _trimmed_copy(original: Path, target: Path) -> Path:
    shutil.copytree(original, target)
    assert keep_last_position_logits(target / "model.onnx")
    manifest = ModelManifest.read(target)
    dataclasses.replace(manifest, logits="last").write(target)
    return target


def _empty_past_feeds(session: ort.InferenceSession, ids: np.ndarray) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
    }
    for value in session.get_inputs():
        if value.name.startswith("past_key_values"):
            heads, head = value.shape[1], value.shape[3]
            feeds[value.name] = np.zeros((ids.shape[0], heads, 0, head), dtype=np.float32)
        elif value.name == "position_ids":
            feeds[value.name] = np.arange(ids.shape[1], dtype=np.int64)[None, :]
    return feeds


@pytest.mark.parametrize("layout", LAYOUTS)
def test_trimmed_graph_gives_the_same_last_position_logits(tmp_path: Path, layout: str) -> None:
    original = write_model_dir(tmp_path / "full", layout)  # type: ignore[arg-type]
    trimmed = _trimmed_copy(original, tmp_path / "last")
    ids = np.arange(3, 15, dtype=np.int64)[None, :]
    full = ort.InferenceSession(str(original / "model.onnx"))
    last = ort.InferenceSession(str(trimmed / "model.onnx"))
    want = full.run(["logits"], _empty_past_feeds(full, ids))[0]
    got = last.run(["logits"], _empty_past_feeds(last, ids))[0]
    assert want.shape[1] == ids.shape[1] and got.shape == (1, 1, want.shape[2])
    np.testing.assert_array_equal(got[0, 0], want[0, -1])
    assert last.get_outputs()[0].shape[1] == 1


def test_a_graph_sliced_already_is_left_as_it_is(tmp_path: Path) -> None:
    """Building a prefill graph from a prepared (sliced) fp32 build slices it once, not twice."""
    trimmed = _trimmed_copy(write_model_dir(tmp_path / "full", "shared"), tmp_path / "last")
    before = (trimmed / "model.onnx").read_bytes()
    assert keep_last_position_logits(trimmed / "model.onnx")
    assert (trimmed / "model.onnx").read_bytes() == before


def test_graphs_whose_logits_are_not_a_projection_are_left_alone(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["logits"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s", 4])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    before = path.read_bytes()
    assert not keep_last_position_logits(path)
    assert path.read_bytes() == before


@pytest.mark.anyio
@pytest.mark.parametrize("layout", LAYOUTS)
async def test_backend_streams_the_same_tokens_from_the_trimmed_graph(
    tmp_path: Path, layout: str
) -> None:
    original = write_model_dir(tmp_path / "full", layout)  # type: ignore[arg-type]
    trimmed = _trimmed_copy(original, tmp_path / "last")
    results = []
    for directory in (original, trimmed):
        # Chunks of 3 tokens: every prefill run reads its last position's logits.
        async with running(directory, max_batch=2, prefill_chunk=3) as backend:
            results.append(await collect(backend, request(PROMPT, 16)))
    assert results[0].ids == results[1].ids
    assert len(results[0].ids) > 0
