"""The middlewares benchmark runs end to end (quick mode) on the tiny ONNX model."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.middlewares import benchmark as middlewares
from benchmarks.middlewares._probes import percentile

from tests.backends.onnx.tiny_models import write_model_dir


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 50) == 10.0
    assert percentile(values, 99) == 20.0
    assert percentile([3.0], 99) == 3.0


def test_quick_run_measures_all_three_parts_and_writes_its_docs_section(
    tmp_path: Path,
) -> None:
    model = write_model_dir(tmp_path / "model", "concat")
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- other:start -->\nkept\n<!-- other:end -->\n")

    overheads, latencies = middlewares.main(
        quick=True, results_dir=tmp_path / "results", docs=docs, command="test", model=model
    )

    assert [o.scenario for o in overheads] == ["single stream", "2 streams, aggregate"]
    assert all(o.on_tokens_per_second > 0 and o.off_tokens_per_second > 0 for o in overheads)
    result = json.loads((tmp_path / "results" / "middlewares.json").read_text())
    disconnects, resumes = result["disconnect_samples"], result["resume_samples"]
    assert len(disconnects) == len(resumes) == middlewares.Settings.quick().samples
    # A dropped stream really leaves the batch, and only a few decode steps later.
    assert all(0 <= d["ms"] < 10_000 and 0 <= d["steps"] < 16 for d in disconnects)
    # Every reconnect replayed exactly the events after its Last-Event-ID.
    assert all(r["replayed_ids_contiguous"] for r in resumes)
    assert [lat.count for lat in latencies] == [len(disconnects), len(resumes)]
    text = docs.read_text()
    assert "<!-- other:start -->\nkept\n<!-- other:end -->" in text
    assert text.count("## Middlewares") == 1
    assert "<!-- middlewares:start -->" in text and "disconnect → slot freed" in text
