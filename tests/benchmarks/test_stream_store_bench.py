"""The stream store benchmark runs end to end (quick mode) against a real redis-server."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.stream_store import benchmark as stream_store

from tests._support.scaleout import ensure_scaleout_parts


def test_quick_run_compares_both_stores_and_writes_its_docs_section(
    tmp_path: Path, smollm2_dir: Path
) -> None:
    ensure_scaleout_parts()
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- other:start -->\nkept\n<!-- other:end -->\n")

    throughput, reconnect = stream_store.main(
        quick=True, results_dir=tmp_path / "results", docs=docs, command="test", model=smollm2_dir
    )

    quick = stream_store.Settings.quick()
    echo = [t.streams for t in throughput if t.backend == "echo"]
    model = [t.streams for t in throughput if t.backend.startswith("onnx")]
    assert echo == list(quick.concurrency) and model == list(quick.model_concurrency)
    assert all(t.memory_tokens_per_second > 0 and t.redis_tokens_per_second > 0 for t in throughput)
    assert all((t.no_failover_ratio or 0) > 0 for t in throughput if t.backend == "echo")
    assert reconnect.samples == stream_store.Settings.quick().reconnects
    assert reconnect.replayed_ids_contiguous  # the replica that never produced it resumed it
    result = json.loads((tmp_path / "results" / "stream_store.json").read_text())
    assert result["load_average"]["before"]
    text = docs.read_text()
    assert "kept" in text and "<!-- stream-store:start -->" in text
    # Failover runs with it: every run's stream was continued whole after the kill.
    failover = json.loads((tmp_path / "results" / "stream_store_failover.json").read_text())
    assert failover["failover"]["complete"] and failover["failover"]["samples"] > 0
    assert "<!-- stream-store-failover:start -->" in text
