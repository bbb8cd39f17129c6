"""The bf16 prefill graph (OpenVINO) beside the decode graph (ONNX Runtime): one KV buffer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino
import pytest

from tests.backends.onnx._helpers import (
    CPU_HAS_BF16,
    collect,
    graph_feeds,
    needs_bf16,
    request,
    running,
)
from tests.backends.onnx.tiny_models import write_model_dir
from tokenwire.backends.onnx import openvino_prompts
from tokenwire.backends.onnx._graph_io import LAST_POSITIONS, RunnerSettings
from tokenwire.backends.onnx.manifest import ModelManifest
from tokenwire.backends.onnx.openvino_prompts import OpenVINOPromptGraph
from tokenwire.backends.onnx.options import check_options
from tokenwire.backends.onnx.runner import create_runner
from tokenwire.backends.onnx.session import create_session, resolve_device
from tokenwire.prepare.openvino_prefill import OPENVINO_PREFILL_FILE, build_openvino_prefill

PROMPT = [300, 250, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 4]
# bf16 keeps 8 bits of mantissa: logits agree with fp32 to about 1% of their range.
BF16_TOLERANCE = 0.03

# The graph's own tests run everywhere: in bf16 where the CPU has it, else in f32.
PRECISION = "bf16" if CPU_HAS_BF16 else "f32"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny shared-layout model with a bf16 prefill graph made by `build_openvino_prefill`."""
    directory = write_model_dir(tmp_path_factory.mktemp("bf16-prefill"), "shared")
    build_openvino_prefill(directory / "model.onnx", directory / OPENVINO_PREFILL_FILE)
    manifest = ModelManifest.read(directory)
    replace(manifest, prefill_bf16_file=OPENVINO_PREFILL_FILE).write(directory)
    return directory


def _fp32(model_dir: Path, ids: list[int], past: list[np.ndarray] | None = None) -> list:
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return session.run(None, graph_feeds(ModelManifest.read(model_dir), ids, past))


def _runner(model_dir: Path, min_tokens: int):  # type: ignore[no-untyped-def]
    manifest = ModelManifest.read(model_dir)
    cpu = resolve_device("cpu")
    session, placement = create_session(model_dir / manifest.model_file, cpu)
    settings = RunnerSettings(
        max_batch=4, max_context=manifest.kv.max_context, max_run_tokens=64,
        pad_token_id=manifest.pad_token_id, prefill_min_tokens=min_tokens,
    )  # fmt: skip
    path = model_dir / OPENVINO_PREFILL_FILE
    return create_runner(
        session, manifest.kv, placement, settings,
        # Warmed as the backend warms it: slot 0 holds throwaway keys, and still serves.
        lambda cache, _logits: OpenVINOPromptGraph(path, cache, precision=PRECISION, warm_tokens=16),
    )  # fmt: skip


def _close(got: np.ndarray, expected: np.ndarray) -> None:
    scale = float(np.abs(expected).max())
    assert np.abs(got - expected).max() < BF16_TOLERANCE * scale


def test_the_openvino_model_keeps_the_kv_contract_and_takes_the_logits_slice(
    model_dir: Path,
) -> None:
    model = openvino.Core().read_model(str(model_dir / OPENVINO_PREFILL_FILE))
    inputs = {name for port in model.inputs for name in port.get_names()}
    outputs = {name for port in model.outputs for name in port.get_names()}
    manifest = ModelManifest.read(model_dir)
    for i in range(manifest.kv.num_layers):
        for kind in ("key", "value"):
            assert f"past_key_values.{i}.{kind}" in inputs
            assert f"present.{i}.{kind}" in outputs
    assert {"input_ids", "attention_mask", LAST_POSITIONS} <= inputs


def test_large_prompt_runs_go_to_openvino_and_small_ones_stay(model_dir: Path) -> None:
    runner = _runner(model_dir, min_tokens=len(PROMPT))
    exact = _fp32(model_dir, PROMPT)[0][0, -1]
    got = runner.prefill(0, np.array(PROMPT))
    _close(got, exact)
    assert not np.array_equal(got, exact)  # rounded otherwise: it ran on OpenVINO
    short = PROMPT[:-1]
    np.testing.assert_array_equal(
        runner.prefill(1, np.array(short)), _fp32(model_dir, short)[0][0, -1]
    )


def test_decode_steps_read_the_kv_openvino_wrote(model_dir: Path) -> None:
    outputs = _fp32(model_dir, PROMPT)
    token = int(np.argmax(outputs[0][0, -1]))
    expected = _fp32(model_dir, [token], list(outputs[1:]))[0][0, -1]
    runner = _runner(model_dir, min_tokens=8)
    assert int(np.argmax(runner.prefill(2, np.array(PROMPT)))) == token
    _close(runner.decode([2], [token])[0], expected)


def test_a_chunk_after_a_past_reads_the_past_from_the_shared_buffer(model_dir: Path) -> None:
    """The first chunk runs on the decode graph (too small), the second on OpenVINO, which
    must read the first chunk's keys and values out of the slot's rows."""
    runner = _runner(model_dir, min_tokens=8)
    runner.prefill(3, np.array(PROMPT[:5]))
    got = runner.prefill(3, np.array(PROMPT[5:]))
    assert runner.length(3) == len(PROMPT)
    _close(got, _fp32(model_dir, PROMPT)[0][0, -1])


def test_a_fresh_batch_runs_row_by_row_when_each_row_reaches_the_threshold(
    model_dir: Path,
) -> None:
    prompts = [np.array(PROMPT[:7]), np.array(PROMPT[1:8])]
    # OpenVINO runs the rows one by one, paying its fixed cost per row: 2 rows × 7 tokens
    # count as 7, below a threshold of 8, and stay on the decode graph (exactly fp32 here).
    small = _runner(model_dir, min_tokens=8).prefill_fresh(0, prompts)
    for row, prompt in enumerate(prompts):
        np.testing.assert_allclose(
            small[row], _fp32(model_dir, prompt.tolist())[0][0, -1], rtol=1e-5, atol=1e-5
        )
    runner = _runner(model_dir, min_tokens=7)  # each row's 7 tokens: OpenVINO
    got = runner.prefill_fresh(0, prompts)
    assert not np.array_equal(got[0], small[0])
    for row, prompt in enumerate(prompts):
        _close(got[row], _fp32(model_dir, prompt.tolist())[0][0, -1])
        token = int(np.argmax(got[row]))
        outputs = _fp32(model_dir, prompt.tolist())
        _close(
            runner.decode([row], [token])[0], _fp32(model_dir, [token], list(outputs[1:]))[0][0, -1]
        )


@needs_bf16
@pytest.mark.anyio
async def test_the_backend_serves_with_the_bf16_prefill_graph(model_dir: Path) -> None:
    texts = {}
    for graph in ("bf16", "off"):
        async with running(model_dir, prefill_graph=graph, prefill_graph_min_tokens=1) as b:
            assert b.prefill_graph == graph
            texts[graph] = (await collect(b, request("Write a Python function", 12))).ids
    assert texts["bf16"] and texts["off"]


@pytest.mark.anyio
async def test_a_model_without_the_graph_asked_for_is_refused_saying_how_to_build_one(
    tmp_path: Path,
) -> None:
    directory = write_model_dir(tmp_path / "plain", "shared")
    with pytest.raises(ValueError, match="--bf16-prefill-graph"):
        async with running(directory, prefill_graph="bf16"):
            pass
    # The int8 graph, asked for and missing, is refused the same way, not skipped quietly.
    with pytest.raises(ValueError, match="prepare --prefill-graph"):
        async with running(directory, prefill_graph=True):
            pass
    concat = write_model_dir(tmp_path / "concat", "concat")
    with pytest.raises(ValueError, match="shared KV layout"):
        async with running(concat, prefill_graph="int8"):
            pass
    with pytest.raises(ValueError, match="prefill_graph must be one of off, int8, bf16"):
        async with running(directory, prefill_graph="fp8"):
            pass


@pytest.mark.anyio
async def test_a_cpu_without_bf16_is_refused_pointing_at_the_int8_graph(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openvino_prompts, "has_bf16", lambda core: False)
    with pytest.raises(ValueError, match="prefill_graph=int8"):
        async with running(model_dir, prefill_graph="bf16"):
            pass


@pytest.mark.parametrize(
    ("graph", "chunk", "min_tokens"),
    [("bf16", 1024, 64), ("int8", 256, 16), (True, 256, 16), ("off", 256, 16)],
)
def test_the_bf16_graph_runs_longer_chunks_from_a_higher_threshold(
    model_dir: Path, graph: bool | str, chunk: int, min_tokens: int
) -> None:
    """Each OpenVINO run has a larger fixed cost (docs/onnx-backend.md): by default it takes
    prompts whole up to 1,024 tokens and only runs of 64 tokens or more; an operator's own
    values stand."""
    manifest = ModelManifest.read(model_dir)
    defaults = _options(manifest, model_dir, graph, None, None)
    assert (defaults.prefill_chunk, defaults.prefill_graph_min_tokens) == (chunk, min_tokens)
    own = _options(manifest, model_dir, graph, 100, 8)
    assert (own.prefill_chunk, own.prefill_graph_min_tokens) == (100, 8)


def _options(manifest, model_dir, graph, chunk, min_tokens):  # type: ignore[no-untyped-def]
    return check_options(
        manifest, model_dir, max_batch=4, max_queue=4, prefill_chunk=chunk,
        prefill_budget_ms=30, target_itl_ms=None, target_ttft_ms=None, batch_prefill=True,
        max_context=None, intra_op_threads=None, allow_spinning=True,
        default_temperature=None, default_top_p=None, default_top_k=None, speculation=False,
        speculative_tokens=4, speculation_max_batch=1, speculation_priced=False,
        fast_forward=True, denormal_as_zero=False, prefill_graph=graph,
        prefill_graph_min_tokens=min_tokens,
    )  # fmt: skip
