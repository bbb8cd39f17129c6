"""The prefill-quality benchmark's measurement on the tiny fixture model: a graph that is the
fp32 graph agrees exactly, the int8 prefill graphs (last-position graphs, widened to every
position) do not, and the smoothed one is the closer where an activation has an outlier."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from benchmarks.prefill import quality
from onnx import numpy_helper

from tests.backends.onnx.tiny_models import write_model_dir
from tokenwire.backends.onnx.manifest import ModelManifest
from tokenwire.prepare.prefill_graph import build_prefill_graph

TEXTS = [[1, 40, 41, 42, 300, 120, 7, 8, 9], [1, 250, 17, 18, 19], list(range(3, 60))]


def _with_outlier(directory: Path) -> None:
    """Layer 0's normed input gets a channel 100x larger, the weights reading it 100x
    smaller: the same function, and the outlier SmoothQuant is for."""
    model = onnx.load(str(directory / "model.onnx"))
    weights = {i.name: i for i in model.graph.initializer}
    for name, factor in (("l0.norm1", 100.0), ("l0.q", 0.01), ("l0.k", 0.01), ("l0.v", 0.01)):
        value = numpy_helper.to_array(weights[name]).copy()
        value[3] *= factor
        weights[name].CopyFrom(numpy_helper.from_array(value, name))
    onnx.save(model, str(directory / "model.onnx"))


def test_the_decode_graph_that_is_fp32_agrees_exactly_and_the_int8_graphs_do_not(
    tmp_path: Path,
) -> None:
    model = write_model_dir(tmp_path / "model", "shared")
    _with_outlier(model)
    manifest = ModelManifest.read(model)
    build_prefill_graph(model / "model.onnx", model / "prefill.onnx", manifest.kv, TEXTS[:2])
    dataclasses.replace(manifest, prefill_model_file="prefill.onnx").write(model)
    found = quality.measure(model, model / "model.onnx", TEXTS)
    exact = found["int8 decode graph (MatMulNBits, the default)"]  # here: the fp32 graph itself
    assert exact.chat_kl < 1e-6 and exact.chat_top1 == exact.text_top1 == 1.0
    smoothed = found["int8 prefill graph, smoothed (as prepared)"]
    plain = found["int8 prefill graph, unsmoothed"]
    assert 0 < smoothed.chat_kl < plain.chat_kl and 0 < smoothed.text_kl < plain.text_kl
    assert np.isfinite([plain.chat_kl, plain.text_kl]).all()
