"""SmoothQuant for the int8 prefill graph: the fp32 function and the KV it writes are kept,
and an outlier channel stops costing the other channels their precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from tests.backends.onnx._helpers import graph_feeds
from tests.backends.onnx.tiny_models import TinyConfig, write_model_dir
from tokenwire.backends.onnx.manifest import ModelManifest
from tokenwire.prepare.prefill_graph import build_prefill_graph, quantize_rows
from tokenwire.prepare.smoothing import (
    calibration_activations,
    smooth,
    weight_matmuls,
)

CALIBRATION = [[1, 40, 41, 42, 300, 120, 7, 8, 9, 2], [1, 250, 17, 18, 19, 20, 21, 22, 4, 2]]
PROMPT = [1, 300, 250, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 4]
LAYERS = TinyConfig().layers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("smoothing"), "shared")


def _run(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return [np.asarray(out) for out in session.run(None, feeds)]


def _weight(model: onnx.ModelProto, name: str) -> np.ndarray:
    found = next(i for i in model.graph.initializer if i.name == name)
    return numpy_helper.to_array(found).astype(np.float32)


def _set(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    found = next(i for i in model.graph.initializer if i.name == name)
    found.CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))


def test_smoothing_keeps_the_outputs_and_the_kv_the_graph_writes(tiny: Path) -> None:
    manifest = ModelManifest.read(tiny)
    model = onnx.load(str(tiny / "model.onnx"))
    activations = calibration_activations(tiny / "model.onnx", manifest.kv, CALIBRATION)
    assert set(activations) == {node.input[0] for node in weight_matmuls(model)}
    assert all(rows.shape[0] == sum(map(len, CALIBRATION)) for rows in activations.values())
    assert not list(tiny.glob(".*calibration*"))  # the probe graph is gone
    before = _weight(model, "l0.q")
    # One alpha, so every activation is smoothed. Per layer: the two norms' outputs, the
    # attention output and the gated MLP product; then the final norm's.
    chosen = smooth(model, activations, alphas=(0.6,))
    assert len(chosen) == 4 * LAYERS + 1 and set(chosen.values()) == {0.6}
    assert not np.allclose(_weight(model, "l0.q"), before)
    feeds = graph_feeds(manifest, PROMPT, None)
    exact = _run(tiny / "model.onnx", feeds)
    smoothed = _run(model, feeds)
    names = [o.name for o in model.graph.output]
    for name, a, b in zip(names, exact, smoothed, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=name)


def test_the_search_smooths_an_outlier_and_may_leave_an_activation_as_it_is(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each activation gets the alpha whose simulated rounding errs least; 0 among the
    candidates leaves it as it is. Calibration keeps at most CALIBRATION_ROWS rows."""
    from tokenwire.prepare import smoothing

    monkeypatch.setattr(smoothing, "CALIBRATION_ROWS", 300)
    manifest = ModelManifest.read(tiny)
    path = _outlier_model(tiny)
    activations = calibration_activations(path, manifest.kv, [list(range(3, 203))] * 2)
    assert all(rows.shape[0] == 300 for rows in activations.values())
    assert smooth(onnx.load(str(path)), activations, alphas=(0.0,)) == {}
    model = onnx.load(str(path))
    outlier = next(n.input[0] for n in weight_matmuls(model) if n.input[1] == "l0.q")
    chosen = smooth(model, activations)
    assert chosen[outlier] in smoothing.ALPHAS and chosen[outlier] > 0


def _outlier_model(tiny: Path) -> Path:
    """Channel 3 of layer 0's normed input made 100x larger (and the weights reading it
    100x smaller: the same function)."""
    outlier = onnx.load(str(tiny / "model.onnx"))
    norm = _weight(outlier, "l0.norm1")
    norm[3] *= 100
    _set(outlier, "l0.norm1", norm)
    for name in ("l0.q", "l0.k", "l0.v"):
        weight = _weight(outlier, name)
        weight[3] /= 100
        _set(outlier, name, weight)
    path = tiny.parent / "outlier.onnx"
    onnx.save(outlier, str(path))
    return path


def test_an_outlier_channel_rounds_far_closer_to_fp32_once_smoothed(tiny: Path) -> None:
    """One int8 scale per row spends its levels on the outlier channel; smoothing moves the
    range into the weights."""
    manifest = ModelManifest.read(tiny)
    path = _outlier_model(tiny)
    feeds = graph_feeds(manifest, PROMPT, None)
    exact = _run(path, feeds)[0]
    errors = {}
    for smoothed in (False, True):
        model = onnx.load(str(path))
        if smoothed:
            smooth(model, calibration_activations(path, manifest.kv, CALIBRATION))
        quantize_rows(model)
        errors[smoothed] = float(np.abs(_run(model, feeds)[0] - exact).max())
    assert errors[True] < 0.25 * errors[False]


def test_the_prefill_graph_built_smoothed_writes_the_decode_graphs_kv(
    tiny: Path, tmp_path: Path
) -> None:
    """The backend's decode graph reads what the prefill graph wrote: smoothing must not
    rescale the keys or values (folding o_proj's factors into the value projection would)."""
    manifest = ModelManifest.read(tiny)
    out = tmp_path / "model.prefill.onnx"
    build_prefill_graph(tiny / "model.onnx", out, manifest.kv, CALIBRATION)
    feeds = graph_feeds(manifest, PROMPT, None)
    exact, rounded = _run(tiny / "model.onnx", feeds), _run(out, feeds)
    for a, b in zip(exact[1:], rounded[1:], strict=True):  # the present keys and values
        assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
    with pytest.raises(ValueError, match="KV contract"):
        build_prefill_graph(tiny / "model.onnx", tmp_path / "other.onnx", None, CALIBRATION)
