from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.prepare.quality import (
    QUALITY_MESSAGES,
    compare_logits,
    log_softmax,
    measure_quality,
    render_quality_text,
    teacher_forced_logits,
)

from ._support import CHAT_TEMPLATE, write_logits_model

KV = KVContract(
    layout="shared", position_ids=False, num_layers=2, num_kv_heads=2, head_size=4, max_context=64
)


def test_identical_logits_agree_fully_with_zero_kl() -> None:
    logits = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    result = compare_logits(logits, logits.copy())
    assert result.top1_agreement == 1.0
    assert result.mean_kl == pytest.approx(0.0, abs=1e-12)
    assert result.tokens == 5


def test_kl_and_agreement_match_hand_computed_values() -> None:
    # Row 0: p = (1/2, 1/2), q = (3/4, 1/4): KL = 1/2 ln(4/3); argmax 0 vs 0 agree.
    # Row 1: identical: KL 0; argmax 1 vs 1 agree. Row 2: argmax 0 vs 1 disagree.
    reference = np.array([[0.0, 0.0], [0.0, 5.0], [3.0, 0.0]])
    candidate = np.array([[math.log(3), 0.0], [0.0, 5.0], [0.0, 3.0]])
    p2, q2 = 1 / (1 + math.exp(-3)), 1 / (1 + math.exp(3))
    kl_row2 = p2 * math.log(p2 / q2) + q2 * math.log(q2 / p2)
    result = compare_logits(reference, candidate)
    assert result.top1_agreement == pytest.approx(2 / 3)
    assert result.mean_kl == pytest.approx((0.5 * math.log(4 / 3) + 0 + kl_row2) / 3)


def test_log_softmax_is_stable_for_huge_logits() -> None:
    out = log_softmax(np.array([[1e30, 0.0], [-1e30, 1e30]], dtype=np.float64))
    assert np.all(np.isfinite(out[:, :]) | np.isneginf(out))
    assert out[0, 0] == 0.0 and out[1, 1] == 0.0


def test_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="one shape"):
        compare_logits(np.zeros((2, 3)), np.zeros((3, 3)))


def test_quality_text_renders_every_message_through_the_template() -> None:
    text = render_quality_text(CHAT_TEMPLATE)
    for role, content in QUALITY_MESSAGES:
        assert f"<|im_start|>{role}\n{content}<|im_end|>" in text
    assert not text.endswith("<|im_start|>assistant\n")


def test_teacher_forced_logits_reads_every_position(tmp_path: Path) -> None:
    embedding = np.random.default_rng(1).normal(size=(7, 7)).astype(np.float32)
    model = write_logits_model(tmp_path / "m.onnx", embedding)
    ids = [3, 1, 4, 1, 5]
    np.testing.assert_array_equal(teacher_forced_logits(model, KV, ids), embedding[ids])


def test_teacher_forced_logits_feeds_positions_when_the_graph_takes_them(tmp_path: Path) -> None:
    embedding = np.zeros((5, 5), dtype=np.float32)
    model = write_logits_model(tmp_path / "m.onnx", embedding, position_ids=True)
    logits = teacher_forced_logits(model, KV, [0, 1, 2])
    np.testing.assert_array_equal(logits[:, 0], [0.0, 1.0, 2.0])


def test_measure_quality_compares_candidate_with_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(6, 6)).astype(np.float32) * 3
    candidate = reference.copy()
    candidate[2] = -candidate[2]  # token 2's next-token distribution is now wrong
    ids = [0, 1, 2, 3, 4, 5, 2, 2]
    quality = measure_quality(
        write_logits_model(tmp_path / "q.onnx", candidate),
        write_logits_model(tmp_path / "r.onnx", reference),
        KV,
        ids,
    )
    expected = compare_logits(reference[ids], candidate[ids])
    assert quality.tokens == 8
    assert quality.top1_agreement == pytest.approx(expected.top1_agreement, abs=1e-4)
    assert quality.top1_agreement == pytest.approx(5 / 8)
    assert quality.mean_kl == pytest.approx(expected.mean_kl, rel=1e-3)
    assert quality.reference == "fp32"


def test_inputs_the_check_cannot_feed_are_named(tmp_path: Path) -> None:
    model = write_logits_model(tmp_path / "m.onnx", np.eye(3, dtype=np.float32), num_layers=3)
    with pytest.raises(ValueError, match=r"past_key_values\.2\.key"):
        teacher_forced_logits(model, KV, [0, 1])
