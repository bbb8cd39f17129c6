"""The constrained-decoding benchmark runs end to end (quick mode, tiny fixture model) and
its constrained rows really were constrained (valid JSON prefixes, masks timed)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.constrained import benchmark

from tests.backends.onnx.tiny_models import write_model_dir


def test_quick_run_writes_results_and_the_docs_block(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "model", "shared")
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n")
    summaries = benchmark.main(
        quick=True, results_dir=tmp_path / "results", docs=docs, command="test", model=model
    )
    assert {(s.streams, s.constrained, s.fast_forward) for s in summaries} == {
        (n, constrained, ff) for n in (1, 2) for constrained, ff in benchmark.CONDITIONS
    }
    assert all(s.forward_ratio > 0 for s in summaries if s.fast_forward)
    assert all(s.tokens_per_s > 0 and s.ttft_p50_ms > 0 for s in summaries)
    result = json.loads((tmp_path / "results" / "constrained.json").read_text())
    assert result["mask_seconds"]["count"] > 0
    assert 0 < result["mask_seconds"]["p50"] <= result["mask_seconds"]["p99"]
    text = docs.read_text()
    assert "<!-- constrained:start -->" in text and "JSON Schema" in text and "target ≤ 5%" in text
    assert "JSON Schema + fast-forward" in text and "Decode steps per constrained token" in text
