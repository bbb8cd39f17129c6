"""The speculation benchmark runs end to end (quick mode, tiny fixture model): every
condition side by side, the same greedy text, and its docs block."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.speculation import benchmark

from tests.backends.onnx.tiny_models import write_model_dir


def test_quick_run_writes_results_and_the_docs_block(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "model", "shared")
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n")
    summaries = benchmark.main(
        quick=True, results_dir=tmp_path / "results", docs=docs, command="test", model=model
    )
    assert {(s.streams, s.condition) for s in summaries} == {
        (1, "plain"), (1, "speculation"), (2, "plain"), (2, "speculation"), (2, "forced")
    }  # fmt: skip
    assert all(s.tokens_per_s > 0 and s.same_text for s in summaries)
    result = json.loads((tmp_path / "results" / "speculation.json").read_text())
    assert result["bound_tokens_per_s"]["model"] > 0
    text = docs.read_text()
    assert "<!-- speculation:start -->" in text and "acceptance" in text
