"""The TTFT benchmark runs end to end (quick mode, tiny fixture model): every scheduler is
probed under load, the batched prefill is timed, and the docs block names the conditions."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.ttft import benchmark

from tests.backends.onnx.tiny_models import write_model_dir


def test_quick_run_writes_results_and_the_docs_block(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "model", "shared")
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n")
    rows = benchmark.main(
        quick=True, results_dir=tmp_path / "results", docs=docs, command="test", model=model
    )
    assert {(r["kind"], r["condition"]) for r in rows} == {
        (k, c) for k in ("short", "burst", "long") for c in ("before", "after", "goal")
    }
    assert all(0 < r["ttft_p50_ms"] <= r["ttft_p99_ms"] for r in rows)
    assert any(r["gap_max_ms"] > 0 for r in rows)  # the background streams were timed
    result = json.loads((tmp_path / "results" / "ttft.json").read_text())
    assert [c["rows"] for c in result["costs"]] == [1, 2]
    assert all(c["batched_ms"] > 0 for c in result["costs"])
    assert len(result["load_average"]["before"]) == 3
    text = docs.read_text()
    assert "<!-- ttft:start -->" in text and "batch_prefill=false" in text
