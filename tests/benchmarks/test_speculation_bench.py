"""The speculation benchmark runs end to end (quick mode, tiny fixture model): every
condition side by side, the same greedy text, and its docs block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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
        (1, "plain"), (1, "speculation"), (1, "priced"), (2, "plain"), (2, "speculation"), (2, "forced")
    }  # fmt: skip
    assert all(s.tokens_per_s > 0 and s.same_text for s in summaries)
    assert all(s.decode_ratio > 0 for s in summaries)
    result = json.loads((tmp_path / "results" / "speculation.json").read_text())
    assert result["bound_tokens_per_s"]["model"] > 0
    text = docs.read_text()
    assert "<!-- speculation:start -->" in text and "decode rate vs plain" in text


def test_the_decode_rate_leaves_the_prompt_out_of_the_paired_ratio() -> None:
    """Both take 0.5 s to the first delta; speculation then decodes twice as fast. The
    request rate dilutes that with the prompt (2.0 s against 1.5 s), the decode rate not."""

    def sample(condition: str, seconds: float, round_: int) -> benchmark.Sample:
        return benchmark.Sample(
            "m", round_, "quote", 1, condition, 100, seconds, 0, 0, True, 99, seconds - 0.5
        )

    samples = [sample(c, s, r) for r in (0, 1) for c, s in (("plain", 2.0), ("speculation", 1.25))]
    by_condition = {s.condition: s for s in benchmark.summarize(samples)}
    assert by_condition["plain"].ratio == by_condition["plain"].decode_ratio == 1.0
    assert by_condition["speculation"].ratio == pytest.approx(1.6)
    assert by_condition["speculation"].decode_ratio == pytest.approx(2.0)


def test_a_model_with_an_int8_prefill_graph_adds_drafts_verified_there(tmp_path: Path) -> None:
    from dataclasses import replace

    import onnx

    from tokenwire.backends.onnx.manifest import ModelManifest
    from tokenwire.prepare.prefill_graph import PREFILL_MODEL_FILE, quantize_rows

    model = write_model_dir(tmp_path / "model", "shared")
    graph = onnx.load(str(model / "model.onnx"))
    quantize_rows(graph)
    onnx.save(graph, str(model / PREFILL_MODEL_FILE))
    replace(ModelManifest.read(model), prefill_model_file=PREFILL_MODEL_FILE).write(model)
    summaries = benchmark.main(
        quick=True, results_dir=tmp_path / "results", docs=None, command="test", model=model
    )
    verified = [s for s in summaries if s.condition == "int8 graph"]
    assert {s.streams for s in verified} == {1} and len(verified) == 2  # one per prompt
    assert all(s.tokens_per_s > 0 for s in verified)
    verdict = benchmark.table(summaries, {})[1]
    assert "one stream, int8 graph: copy-heavy geometric mean" in verdict


def test_the_llamacpp_comparison_pairs_each_round_and_judges_the_copy_heavy_set() -> None:
    from benchmarks.speculation import llamacpp

    systems = ("tokenwire int8", "llama.cpp", "llama.cpp prompt lookup")
    speeds = {"tokenwire int8": 300.0, "llama.cpp": 100.0, "llama.cpp prompt lookup": 80.0}
    samples = [
        llamacpp.Sample(round_, prompt, system, 128, 128 / (speeds[system] * (1 + round_)))
        for round_ in (0, 1)
        for prompt in ("quote", "essay")
        for system in systems
    ]
    text, verdict = llamacpp.table(samples, systems)
    # Round 1 runs everything twice as fast: medians of the rates, medians of paired ratios.
    assert "| quote | 450.0 | 150.0 | 120.0 | 3.75× | 3.00× |" in text
    assert "copy-heavy geometric mean: 3.75× (target ≥ 3.0×: met)" in verdict
    assert "prompt lookup against llama.cpp without it, copy-heavy geometric mean: 0.80×" in verdict


def test_the_verify_cost_profile_pairs_plain_steps_with_verify_runs(tmp_path: Path) -> None:
    from benchmarks.speculation import verify_cost

    step, ratios = verify_cost.profile(write_model_dir(tmp_path / "model", "shared"), 2)
    assert step > 0
    assert sorted(ratios) == list(verify_cost.DRAFTS) and all(r > 0 for r in ratios.values())
