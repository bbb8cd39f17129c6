"""The prefill-attention benchmark runs end to end (quick mode, tiny fixture model), and every
variant it times computes the attention that GroupQueryAttention computes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from benchmarks.prefill import attention
from benchmarks.prefill._attention_graphs import plain_graph, read_shape

from tests.backends.onnx.tiny_models import write_model_dir

GQA = "(a) GroupQueryAttention, as the builder graph"
NO_ROTARY = "(a') GQA, rotary off"


def test_quick_run_times_every_variant_and_writes_the_docs_block(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "model", "shared")
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n")
    results = attention.main(
        quick=True, results_dir=tmp_path / "results", docs=docs, command="test", model=model
    )
    for case, rows in results["layer"].items():
        assert len(rows) == 9, (case, sorted(rows))  # this ORT runs every variant on CPU
        assert all(row["ms"] > 0 for row in rows.values())
        for name, row in rows.items():
            if (
                name not in (GQA, "(d) GQA, ORT_GQA_DISABLE_FLASH_ATTENTION=1")
                and "max_abs_diff" in row
            ):
                assert row["max_abs_diff"] < 1e-5, (case, name)  # the same maths, no rotary
        assert rows[GQA]["max_abs_diff"] > 1e-3  # rotary on really differs: the check bites
    whole = results["whole"]
    assert all(len(row) == 2 and min(row.values()) > 0 for row in whole.values())
    stored = json.loads((tmp_path / "results" / "prefill-attention.json").read_text())
    assert stored["shape"]["heads"] == 4 and len(stored["load_average"]["before"]) == 3
    text = docs.read_text()
    assert "<!-- prefill-attention:start -->" in text and "decode graph, flash off" in text


def test_tensor_scatter_writes_the_new_keys_into_the_shared_buffer(tmp_path: Path) -> None:
    s = read_shape(write_model_dir(tmp_path / "model", "shared"), 32)
    case = attention.Case(s, batch=2, tokens=3, past=5)
    before = case.buffers[0].copy()
    run = case.plain(attention._session(plain_graph(s, grouped=True, scatter=True), 1), True)
    run()
    new = case.k.reshape(2, 3, s.kv_heads, s.head).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(case.buffers[0][:, :, 5:8], new)
    np.testing.assert_array_equal(case.buffers[0][:, :, :5], before[:, :, :5])  # past kept
