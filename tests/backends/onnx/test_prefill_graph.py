"""The prefill graph beside the decode graph: one KV buffer, prompt runs routed by size."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.backends.onnx._helpers import collect, graph_feeds, request, running
from tests.backends.onnx.tiny_models import write_model_dir
from tokenwire.backends.onnx._graph_io import RunnerSettings
from tokenwire.backends.onnx.manifest import ModelManifest
from tokenwire.backends.onnx.prompt_graphs import OrtPromptGraph, ort_prompt_graph
from tokenwire.backends.onnx.runner import create_runner
from tokenwire.backends.onnx.session import create_session, resolve_device
from tokenwire.backends.onnx.shared_runner import SharedKVRunner
from tokenwire.prepare.prefill_graph import PREFILL_MODEL_FILE, quantize_rows

PROMPT = [300, 250, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 4]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny shared-layout model with a prefill graph made by `quantize_rows`."""
    directory = write_model_dir(tmp_path_factory.mktemp("prefill-graph"), "shared")
    model = onnx.load(str(directory / "model.onnx"))
    assert quantize_rows(model) == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer; LM head
    onnx.save(model, str(directory / PREFILL_MODEL_FILE))
    manifest = ModelManifest.read(directory)
    replace(manifest, prefill_model_file=PREFILL_MODEL_FILE).write(directory)
    return directory


def test_the_prefill_graph_needs_opset_21_for_its_blocked_quantize(tmp_path: Path) -> None:
    model = onnx.load(str(write_model_dir(tmp_path, "shared") / "model.onnx"))
    model.opset_import[0].version = 20
    with pytest.raises(ValueError, match="opset 21"):
        quantize_rows(model)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _runner(  # type: ignore[no-untyped-def]
    model_dir: Path, min_tokens: int, *, prefill_graph: bool = True, decode_rows: int = 0
):
    manifest = ModelManifest.read(model_dir)
    cpu = resolve_device("cpu")
    session, placement = create_session(model_dir / manifest.model_file, cpu)
    prefill = (
        ort_prompt_graph(create_session(model_dir / PREFILL_MODEL_FILE, cpu)[0])
        if prefill_graph
        else None
    )
    settings = RunnerSettings(
        max_batch=4, max_context=manifest.kv.max_context, max_run_tokens=64,
        pad_token_id=manifest.pad_token_id, prefill_min_tokens=min_tokens,
        decode_graph_min_rows=decode_rows,
    )  # fmt: skip
    return create_runner(session, manifest.kv, placement, settings, prefill)


def test_prefill_graph_keeps_the_kv_contract_and_stays_close_to_fp32(model_dir: Path) -> None:
    decode, prefill = _session(model_dir / "model.onnx"), _session(model_dir / PREFILL_MODEL_FILE)
    for ours, theirs in ((decode.get_inputs(), prefill.get_inputs()),
                         (decode.get_outputs(), prefill.get_outputs())):  # fmt: skip
        assert [(a.name, a.type, a.shape) for a in ours] == [
            (b.name, b.type, b.shape) for b in theirs
        ]
    feeds = graph_feeds(ModelManifest.read(model_dir), PROMPT, None)
    exact, rounded = decode.run(None, feeds), prefill.run(None, feeds)
    for a, b in zip(exact, rounded, strict=True):
        assert a.shape == b.shape
        # Per-row int8 activations and per-column int8 weights: close, not equal.
        assert 0 < np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_large_prompt_runs_go_to_the_prefill_graph_and_small_ones_stay(model_dir: Path) -> None:
    manifest = ModelManifest.read(model_dir)
    decode, prefill = _session(model_dir / "model.onnx"), _session(model_dir / PREFILL_MODEL_FILE)
    feeds = graph_feeds(manifest, PROMPT, None)
    runner = _runner(model_dir, min_tokens=len(PROMPT))
    got = runner.prefill(0, np.array(PROMPT))
    np.testing.assert_array_equal(got, prefill.run(["logits"], feeds)[0][0, -1])
    short = PROMPT[: len(PROMPT) - 1]
    got = runner.prefill(1, np.array(short))
    np.testing.assert_array_equal(
        got, decode.run(["logits"], graph_feeds(manifest, short, None))[0][0, -1]
    )


def test_decode_steps_read_the_kv_the_prefill_graph_wrote(model_dir: Path) -> None:
    manifest = ModelManifest.read(model_dir)
    decode, prefill = _session(model_dir / "model.onnx"), _session(model_dir / PREFILL_MODEL_FILE)
    outputs = prefill.run(None, graph_feeds(manifest, PROMPT, None))
    token = int(np.argmax(outputs[0][0, -1]))
    expected = decode.run(["logits"], graph_feeds(manifest, [token], list(outputs[1:])))[0][0, -1]
    runner = _runner(model_dir, min_tokens=8)
    assert int(np.argmax(runner.prefill(2, np.array(PROMPT)))) == token
    np.testing.assert_allclose(runner.decode([2], [token])[0], expected, rtol=1e-5, atol=1e-5)


def test_decode_steps_of_enough_rows_run_on_the_prefill_graph(model_dir: Path) -> None:
    """Per-row int8 activations keep each row's result its own, so a batched step there
    equals each row run alone on the prefill graph; a step of fewer rows stays on the
    decode graph, and reads what the batched step wrote."""
    manifest = ModelManifest.read(model_dir)
    decode, prefill = _session(model_dir / "model.onnx"), _session(model_dir / PREFILL_MODEL_FILE)
    prompts = [PROMPT, PROMPT[2:]]
    runner = _runner(model_dir, min_tokens=1, decode_rows=2)
    tokens = [int(np.argmax(runner.prefill(slot, np.array(p)))) for slot, p in enumerate(prompts)]
    got = runner.decode([0, 1], tokens)
    for row, prompt in enumerate(prompts):
        past = prefill.run(None, graph_feeds(manifest, prompt, None))[1:]
        feeds = graph_feeds(manifest, [tokens[row]], list(past))
        np.testing.assert_allclose(got[row], prefill.run(["logits"], feeds)[0][0, -1], atol=1e-5)
    following = int(np.argmax(got[0]))
    past = prefill.run(None, graph_feeds(manifest, prompts[0] + [tokens[0]], None))[1:]
    expected = decode.run(["logits"], graph_feeds(manifest, [following], list(past)))[0][0, -1]
    np.testing.assert_allclose(runner.decode([0], [following])[0], expected, atol=1e-4)


def test_verify_runs_of_enough_tokens_run_on_the_prefill_graph(model_dir: Path) -> None:
    """A verify run feeds its positions as a batched step feeds rows: from `decode_rows`
    tokens it runs on the prefill graph, over the KV the decode graph wrote; a shorter one
    stays on the decode graph."""
    manifest = ModelManifest.read(model_dir)
    decode, prefill = _session(model_dir / "model.onnx"), _session(model_dir / PREFILL_MODEL_FILE)
    past = list(decode.run(None, graph_feeds(manifest, PROMPT, None))[1:])
    runner = _runner(model_dir, min_tokens=len(PROMPT) + 1, decode_rows=3)
    runner.prefill(0, np.array(PROMPT))  # below min_tokens: on the decode graph
    for draft, graph, other in (([40, 41, 42], prefill, decode), ([40, 41], decode, prefill)):
        feeds = graph_feeds(manifest, draft, past)
        got = runner.verify(0, draft)
        np.testing.assert_allclose(got, graph.run(["logits"], feeds)[0][0], atol=1e-5)
        assert np.abs(got - other.run(["logits"], feeds)[0][0]).max() > 1e-4
        assert runner.length(0) == len(PROMPT)


def test_decode_rows_need_a_prefill_graph_that_batches_rows(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="prefill_graph=int8"):
        _runner(model_dir, min_tokens=1, prefill_graph=False, decode_rows=2)


def test_a_fresh_batch_counts_rows_times_width(model_dir: Path) -> None:
    manifest = ModelManifest.read(model_dir)
    prefill = _session(model_dir / PREFILL_MODEL_FILE)
    prompts = [np.array(PROMPT[:7]), np.array(PROMPT[1:8])]
    runner = _runner(model_dir, min_tokens=14)  # 2 rows × 7: the prefill graph
    got = runner.prefill_fresh(0, prompts)
    for row, prompt in enumerate(prompts):
        feeds = graph_feeds(manifest, prompt.tolist(), None)
        np.testing.assert_allclose(got[row], prefill.run(["logits"], feeds)[0][0, -1], atol=1e-5)


@pytest.mark.anyio
async def test_backend_uses_the_prefill_graph_unless_told_not_to(model_dir: Path) -> None:
    texts = {}
    for enabled in (True, False):
        async with running(model_dir, prefill_graph=enabled, prefill_graph_min_tokens=1) as b:
            texts[enabled] = (await collect(b, request("Write a Python function", 12))).ids
            assert b.prefill_graph == ("int8" if enabled else "off")
    assert texts[True] and texts[False]
    with pytest.raises(ValueError, match="prefill_graph_min_tokens"):
        async with running(model_dir, prefill_graph_min_tokens=0):
            pass


@pytest.mark.anyio
async def test_batched_decode_on_the_prefill_graph_is_an_option_of_the_int8_graph(
    model_dir: Path,
) -> None:
    import anyio

    async with running(model_dir, prefill_graph=True, prefill_graph_decode_rows=2) as b:
        assert b.prefill_graph_decode_rows == 2
        results: list[list[int]] = []

        async def one(text: str) -> None:
            results.append((await collect(b, request(text, 10))).ids)

        async with anyio.create_task_group() as tg:
            for text in ("Write a Python function", "Once upon a time"):
                tg.start_soon(one, text)
        assert len(results) == 2 and all(results)
    for graph, bad, match in ((True, -1, ">= 0"), (False, 2, "prefill_graph=int8")):
        with pytest.raises(ValueError, match=match):
            async with running(model_dir, prefill_graph=graph, prefill_graph_decode_rows=bad):
                pass


@pytest.mark.parametrize(
    ("graph", "decode_rows", "kept"),
    [(True, 2, True), (True, 17, True), (True, 18, False), (True, 0, False), (False, 0, False)],
)
def test_drafts_verified_on_the_int8_graph_keep_their_full_length(
    model_dir: Path, graph: bool, decode_rows: int, kept: bool
) -> None:
    """A full draft of 16 verified there costs little more than a short one, so a rejection
    does not cut the length (docs/benchmarks.md, "Speculation")."""
    from tokenwire.backends.onnx import OnnxBackend

    backend = OnnxBackend(
        model_dir, speculation=True, speculative_tokens=16, prefill_graph=graph,
        prefill_graph_decode_rows=decode_rows,
    )  # fmt: skip
    assert backend.speculation is not None
    assert backend.speculation.draft.keep_length is kept


def test_the_two_ort_sessions_stop_spinning_when_a_run_ends(model_dir: Path) -> None:
    """Each has its own thread pool on the same cores: one spinning idle after its run
    would slow the other's next run (docs/benchmarks.md, "Speculation")."""
    from tokenwire.backends.onnx import OnnxBackend

    key = "session.force_spinning_stop"
    runner = OnnxBackend(model_dir, prefill_graph=True)._load()
    assert isinstance(runner, SharedKVRunner) and isinstance(runner._bulk, OrtPromptGraph)
    for session in (runner.session, runner._bulk.session):
        assert session.get_session_options().get_session_config_entry(key) == "1"
    alone = OnnxBackend(model_dir)._load()
    with pytest.raises(RuntimeError, match=key):  # ORT's default: no entry
        alone.session.get_session_options().get_session_config_entry(key)


def test_a_session_without_gqa_flash_attention_computes_the_same_and_leaves_the_environment(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prefill graph's session is built with GQA's CPU flash path off (faster for long
    prompt runs); the switch is ORT's environment variable, set only while it is built."""
    import os

    monkeypatch.delenv("ORT_GQA_DISABLE_FLASH_ATTENTION", raising=False)
    manifest = ModelManifest.read(model_dir)
    cpu = resolve_device("cpu")
    path = model_dir / manifest.model_file
    flash, _ = create_session(path, cpu)
    plain, _ = create_session(path, cpu, gqa_flash_attention=False)
    assert "ORT_GQA_DISABLE_FLASH_ATTENTION" not in os.environ
    monkeypatch.setenv("ORT_GQA_DISABLE_FLASH_ATTENTION", "0")
    create_session(path, cpu, gqa_flash_attention=False)
    assert os.environ["ORT_GQA_DISABLE_FLASH_ATTENTION"] == "0"  # a user's own value is kept
    ids = list(range(5, 5 + 40))
    feeds = graph_feeds(manifest, ids, None)
    logits = [s.run(["logits"], feeds)[0] for s in (flash, plain)]
    np.testing.assert_allclose(logits[0], logits[1], atol=1e-4)
