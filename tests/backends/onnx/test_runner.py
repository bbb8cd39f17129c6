"""The IOBinding step functions against the plain numpy-fed model, on both KV contracts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.backends.onnx.tiny_models import ReferenceModel
from tokenwire.backends.onnx._graph_io import RunnerSettings
from tokenwire.backends.onnx.manifest import ModelManifest
from tokenwire.backends.onnx.runner import ModelRunner, create_runner
from tokenwire.backends.onnx.session import create_session, resolve_device

PROMPTS = [
    [5, 17, 99, 200, 33, 45, 7],
    [10, 11],
    [300, 250, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 4],
]


def make_runner(model_dir: Path, *, max_batch: int = 4, max_run_tokens: int = 64) -> ModelRunner:
    manifest = ModelManifest.read(model_dir)
    session, placement = create_session(model_dir / "model.onnx", resolve_device("cpu"))
    settings = RunnerSettings(
        max_batch=max_batch, max_context=manifest.kv.max_context,
        max_run_tokens=max_run_tokens, pad_token_id=manifest.pad_token_id,
    )  # fmt: skip
    return create_runner(session, manifest.kv, placement, settings)


def greedy(
    runner: ModelRunner, slot: int, prompt: list[int], count: int, chunk: int = 64
) -> list[int]:
    logits = None
    for start in range(0, len(prompt), chunk):
        logits = runner.prefill(slot, np.array(prompt[start : start + chunk]))
    assert logits is not None
    out = [int(np.argmax(logits))]
    while len(out) < count:
        out.append(int(np.argmax(runner.decode([slot], [out[-1]])[0])))
    return out


def test_cached_greedy_decode_equals_full_recompute(model_dir: Path) -> None:
    reference = ReferenceModel(model_dir)
    for prompt in PROMPTS:
        expected = reference.greedy(prompt, 16)
        assert greedy(make_runner(model_dir), 0, prompt, 16) == expected
        assert len(set(expected)) > 4  # the model does not just repeat one token


def test_iobinding_logits_equal_numpy_fed_session_run(model_dir: Path) -> None:
    reference = ReferenceModel(model_dir)
    runner = make_runner(model_dir)
    prompt = PROMPTS[0]
    tokens = greedy(runner, 1, prompt, 8)
    expected = reference.cached_logits(prompt, tokens[:-1])
    runner.release(1)
    got = [runner.prefill(1, np.array(prompt)).copy()]
    for token in tokens[:-1]:
        got.append(runner.decode([1], [token])[0].copy())
    for step, (a, b) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=f"step {step}")


def test_ragged_batch_rows_equal_their_runs_alone(model_dir: Path) -> None:
    alone = [greedy(make_runner(model_dir), 0, prompt, 12) for prompt in PROMPTS]
    runner = make_runner(model_dir)
    # Slot 1 is a hole in the decode rows: mid-prefill of another prompt the whole time.
    slots = [0, 2, 3]
    runner.prefill(1, np.array([7, 8, 9]))
    outs = {}
    for slot, prompt in zip(slots, PROMPTS, strict=True):
        outs[slot] = [int(np.argmax(runner.prefill(slot, np.array(prompt))))]
    for step in range(11):
        logits = runner.decode(slots, [outs[s][-1] for s in slots])
        for row, slot in enumerate(slots):
            outs[slot].append(int(np.argmax(logits[row])))
        if step == 4:
            runner.prefill(1, np.array([10, 11]))
    assert [outs[s] for s in slots] == alone


def test_hole_slot_prefill_is_not_disturbed_by_decode_steps(model_dir: Path) -> None:
    reference = ReferenceModel(model_dir)
    runner = make_runner(model_dir)
    runner.prefill(0, np.array(PROMPTS[0]))
    runner.prefill(2, np.array(PROMPTS[1]))
    first = runner.prefill(1, np.array([7, 8, 9])).copy()
    np.testing.assert_allclose(first, reference.logits([7, 8, 9]), rtol=1e-4, atol=1e-4)
    for token in (3, 4, 5):  # slot 1 rides along as a dummy row at its current length
        runner.decode([0, 2], [token, token])
    last = runner.prefill(1, np.array([10, 11]))
    np.testing.assert_allclose(last, reference.logits([7, 8, 9, 10, 11]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_chunked_prefill_equals_one_shot(model_dir: Path, chunk: int) -> None:
    prompt = PROMPTS[2]
    np.testing.assert_allclose(
        _prefill_chunks(make_runner(model_dir), prompt, chunk),
        make_runner(model_dir).prefill(0, np.array(prompt)).copy(),
        rtol=1e-5,
        atol=1e-5,
    )
    one_shot = greedy(make_runner(model_dir), 0, prompt, 10, chunk=len(prompt))
    assert greedy(make_runner(model_dir), 0, prompt, 10, chunk=chunk) == one_shot


def _prefill_chunks(runner: ModelRunner, prompt: list[int], chunk: int) -> np.ndarray:
    logits = None
    for start in range(0, len(prompt), chunk):
        logits = runner.prefill(0, np.array(prompt[start : start + chunk]))
    assert logits is not None
    return logits.copy()


def test_released_slot_starts_afresh(model_dir: Path) -> None:
    runner = make_runner(model_dir)
    first = greedy(runner, 0, PROMPTS[0], 6)
    runner.release(0)
    assert runner.length(0) == 0
    assert greedy(runner, 0, PROMPTS[0], 6) == first


def test_prefill_beyond_the_context_is_refused(model_dir: Path) -> None:
    runner = make_runner(model_dir, max_run_tokens=512)
    context = ModelManifest.read(model_dir).kv.max_context
    with pytest.raises(ValueError, match="cannot feed"):
        runner.prefill(0, np.zeros(context + 1, dtype=np.int64))
