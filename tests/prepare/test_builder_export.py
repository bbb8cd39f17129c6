"""Which graph the builder path ships per precision and source, with the builder faked.

The fake builder writes a small fp32 graph (weights on a Q4_1 grid, or off any grid) and a
`genai_config.json`; the source-grid pass and ONNX Runtime are real.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.prepare.test_source_grid import FFN, HIDDEN, q4_1_weights, write_graph
from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.prepare import exporters
from tokenwire.prepare.progress import ProgressReporter
from tokenwire.prepare.source import ModelSource
from tokenwire.prepare.tokenizer_repair import SpecialTokenIds

KV = KVContract(
    layout="shared", position_ids=False, num_layers=1, num_kv_heads=1, head_size=8, max_context=64
)


class FakeBuilder:
    def __init__(self, on_grid: bool) -> None:
        self.on_grid = on_grid
        self.calls: list[tuple[Path, str]] = []

    def __call__(
        self, hf_dir: Path, out_dir: Path, precision: str, cache: Path, log: Path
    ) -> KVContract:
        self.calls.append((out_dir, precision))
        out_dir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(5)

        def off_grid(k: int, n: int) -> np.ndarray:
            return rng.standard_normal((k, n)).astype(np.float32)

        layer = (lambda k, n: q4_1_weights(rng, k, n)) if self.on_grid else off_grid
        weights = {
            "gate.weight": layer(HIDDEN, FFN),
            "up.weight": layer(HIDDEN, FFN),
            "down.weight": layer(FFN, HIDDEN),
            "head.weight": off_grid(HIDDEN, 160),
            "noise.weight": off_grid(HIDDEN, 48),
        }
        write_graph(out_dir / "model.onnx", weights)
        (out_dir / "genai_config.json").write_text(json.dumps({"built": precision}))
        return KV


@pytest.fixture
def export(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    special = SpecialTokenIds(eos_token_ids=(2,), pad_token_id=2, bos_token_id=None)

    def fake_hf_dir(
        source: ModelSource, work_dir: Path, progress: object, log: Path
    ) -> tuple[Path, SpecialTokenIds]:
        (work_dir / "hf").mkdir(parents=True, exist_ok=True)
        return work_dir / "hf", special

    monkeypatch.setattr(exporters, "prepare_hf_dir", fake_hf_dir)

    def run(kind: str, precision: str, *, on_grid: bool) -> tuple[Path, FakeBuilder, str]:
        builder = FakeBuilder(on_grid)
        monkeypatch.setattr(exporters, "run_builder", builder)
        source = ModelSource(kind, tmp_path / "source", "0" * 64, "tiny")
        out, work = (
            tmp_path / f"out-{kind}-{precision}-{on_grid}",
            tmp_path / f"work-{kind}-{precision}-{on_grid}",
        )
        out.mkdir()
        work.mkdir()
        stream = io.StringIO()
        exported = exporters.export_with_builder(
            source, out, work, precision, ProgressReporter(stream=stream), tmp_path / "log"
        )
        assert exported.kv == KV
        assert exported.reference_model == work / "fp32" / "model.onnx"
        return out, builder, stream.getvalue()

    return run


def bits(model_dir: Path) -> list[int]:
    graph = onnx.load(str(model_dir / "model.onnx")).graph
    return sorted(
        next(a.i for a in n.attribute if a.name == "bits")
        for n in graph.node
        if n.op_type == "MatMulNBits"
    )


def test_int4_from_a_gguf_on_a_grid_keeps_it_and_skips_the_builders_int4(export) -> None:
    out, builder, log = export("gguf", "int4", on_grid=True)
    assert [precision for _, precision in builder.calls] == ["fp32"]
    assert bits(out) == [4, 4, 4, 8, 8]  # gate, up, down on the grid; head and noise off it
    assert json.loads((out / "genai_config.json").read_text()) == {"built": "fp32"}
    assert "3 weight matrices on their source grid" in log


def test_int4_from_a_gguf_off_any_grid_falls_back_to_the_builders_int4(export) -> None:
    out, builder, log = export("gguf", "int4", on_grid=False)
    assert [precision for _, precision in builder.calls] == ["fp32", "int4"]
    assert builder.calls[1][0] == out
    assert json.loads((out / "genai_config.json").read_text()) == {"built": "int4"}
    assert "re-quantizing instead" in log


@pytest.mark.parametrize(("kind", "precision"), [("dir", "int4"), ("gguf", "int8")])
def test_other_quantized_builds_are_the_builders_own(export, kind: str, precision: str) -> None:
    out, builder, _ = export(kind, precision, on_grid=True)
    assert [p for _, p in builder.calls] == ["fp32", precision]
    assert json.loads((out / "genai_config.json").read_text()) == {"built": precision}
