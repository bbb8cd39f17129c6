from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tokenwire.backends.onnx.manifest import (
    DEFAULT_MODEL_NAME,
    KVContract,
    ModelManifest,
    Quality,
    SamplingDefaults,
)
from tokenwire.prepare import (
    PrepareError,
    PrepareOptions,
    QualityGateError,
    exporters,
    prepare_model,
)
from tokenwire.prepare.exporters import RECIPES, ExportedModel
from tokenwire.prepare.progress import ProgressReporter
from tokenwire.prepare.sampling_defaults import SMOLLM2_CARD_DEFAULTS
from tokenwire.prepare.source import ModelSource
from tokenwire.prepare.tokenizer_repair import SpecialTokenIds, copy_assets

from ._support import write_hf_dir

KV = KVContract(
    layout="shared", position_ids=False, num_layers=2, num_kv_heads=2, head_size=4, max_context=64
)


@dataclass
class FakeExport:
    """Stands in for the heavy conversion: writes a fake model and real tokenizer assets."""

    calls: list[tuple[ModelSource, str]] = field(default_factory=list)
    fail: bool = False

    def __call__(
        self,
        source: ModelSource,
        out_dir: Path,
        work_dir: Path,
        precision: str,
        progress: ProgressReporter,
        log_file: Path,
    ) -> ExportedModel:
        self.calls.append((source, precision))
        log_file.write_text("fake toolchain output\n")
        with progress.stage("fake export"):
            (out_dir / "model.onnx").write_bytes(b"graph:" + precision.encode())
            copy_assets(write_hf_dir(work_dir / "hf"), out_dir)
            if self.fail:
                raise PrepareError("the fake export broke")
            reference = None
            if precision != "fp32":
                reference = work_dir / "fp32.onnx"
                reference.write_bytes(b"reference")
        return ExportedModel(
            KV, SpecialTokenIds((2,), 2, None), reference, {"fake-toolchain": "1.0"}
        )


@dataclass
class FakeMeasure:
    top1: float = 0.97
    seen: list[tuple[Path, Path, int]] = field(default_factory=list)

    def __call__(
        self, candidate: Path, reference: Path, kv: KVContract, ids: Sequence[int]
    ) -> Quality:
        assert candidate.is_file() and reference.is_file()
        self.seen.append((candidate, reference, len(ids)))
        return Quality(top1_agreement=self.top1, mean_kl=0.01, tokens=len(ids))


def _gguf(tmp_path: Path, content: bytes = b"GGUF v1") -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(content)
    return path


def _leftovers(parent: Path) -> list[str]:
    """Hidden temp dirs beside an output; the toolchain log is kept on purpose."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and p.is_dir())


def test_default_source_goes_to_the_default_model_dir(
    tokenwire_home: Path, fake_default_package: Path
) -> None:
    export = FakeExport()
    result = prepare_model(
        PrepareOptions(), export=export, measure=FakeMeasure(), stream=io.StringIO()
    )
    assert result.directory == tokenwire_home / "models" / DEFAULT_MODEL_NAME
    assert result.manifest.name == result.manifest.model_id == DEFAULT_MODEL_NAME
    assert result.built


def test_manifest_records_source_options_contract_and_quality(
    tokenwire_home: Path, tmp_path: Path
) -> None:
    gguf = _gguf(tmp_path)
    measure = FakeMeasure(top1=0.93)
    result = prepare_model(
        PrepareOptions(source=gguf), export=FakeExport(), measure=measure, stream=io.StringIO()
    )

    manifest = ModelManifest.read(result.directory)
    assert manifest == result.manifest
    assert result.directory.name == "tiny-int8"
    assert manifest.exporter == "builder" and manifest.precision == "int8"
    assert manifest.source == {
        "kind": "gguf",
        "path": str(gguf.resolve()),
        "sha256": hashlib.sha256(b"GGUF v1").hexdigest(),
        "recipe": f"builder-{RECIPES['builder']}",
    }
    assert manifest.kv == KV
    assert (manifest.eos_token_ids, manifest.pad_token_id, manifest.bos_token_id) == ((2,), 2, None)
    assert manifest.quality == Quality(top1_agreement=0.93, mean_kl=0.01, tokens=measure.seen[0][2])
    assert measure.seen[0][2] > 50  # the fixed chat text, tokenized
    assert manifest.versions == {"fake-toolchain": "1.0"}
    for name in ("model.onnx", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "generation_config.json"):  # fmt: skip
        assert (result.directory / name).is_file()
    assert manifest.chat_template_file == "chat_template.jinja"


def test_second_run_is_a_no_op(tokenwire_home: Path, tmp_path: Path) -> None:
    options = PrepareOptions(source=_gguf(tmp_path))
    export = FakeExport()
    first = prepare_model(options, export=export, measure=FakeMeasure(), stream=io.StringIO())
    stamp = (first.directory / "manifest.json").stat().st_mtime_ns
    log = io.StringIO()

    second = prepare_model(options, export=export, measure=FakeMeasure(), stream=log)

    assert not second.built
    assert len(export.calls) == 1
    assert second.manifest == first.manifest
    assert (first.directory / "manifest.json").stat().st_mtime_ns == stamp
    assert "up to date" in log.getvalue()


@pytest.mark.parametrize(
    "change",
    [
        lambda o, g: (g.write_bytes(b"GGUF v2"), o)[1],
        lambda o, g: PrepareOptions(source=o.source, output=o.output, precision="fp32"),
        lambda o, g: PrepareOptions(source=o.source, output=o.output, exporter="optimum"),
        lambda o, g: PrepareOptions(source=o.source, output=o.output, rebuild=True),
    ],
    ids=["source-bytes", "precision", "exporter", "rebuild"],
)
def test_changed_source_or_options_rebuild_in_place(
    tokenwire_home: Path, tmp_path: Path, change: object
) -> None:
    gguf = _gguf(tmp_path)
    options = PrepareOptions(source=gguf, output=tmp_path / "out")
    export = FakeExport()
    prepare_model(options, export=export, measure=FakeMeasure(), stream=io.StringIO())
    (options.output / "stale-extra-file").write_text("x")  # type: ignore[operator]

    changed = change(options, gguf)  # type: ignore[operator]
    result = prepare_model(changed, export=export, measure=FakeMeasure(), stream=io.StringIO())

    assert result.built and len(export.calls) == 2
    assert result.directory == tmp_path / "out"
    assert not (result.directory / "stale-extra-file").exists()  # replaced whole, not merged
    assert ModelManifest.read(result.directory).precision == changed.precision
    assert _leftovers(tmp_path) == []


def test_a_new_recipe_makes_old_builds_stale(
    tokenwire_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = PrepareOptions(source=_gguf(tmp_path), output=tmp_path / "out")
    export = FakeExport()
    prepare_model(options, export=export, measure=FakeMeasure(), stream=io.StringIO())
    monkeypatch.setitem(exporters.RECIPES, "builder", "999")
    result = prepare_model(options, export=export, measure=FakeMeasure(), stream=io.StringIO())
    assert result.built and len(export.calls) == 2
    assert result.manifest.source["recipe"] == "builder-999"


def test_failed_export_leaves_nothing_behind(tokenwire_home: Path, tmp_path: Path) -> None:
    output = tmp_path / "models" / "m"
    with pytest.raises(PrepareError, match="fake export broke"):
        prepare_model(
            PrepareOptions(source=_gguf(tmp_path), output=output),
            export=FakeExport(fail=True),
            measure=FakeMeasure(),
            stream=io.StringIO(),
        )
    assert not output.exists()
    assert _leftovers(output.parent) == []
    assert (output.parent / ".m.prepare.log").read_text() == "fake toolchain output\n"


def test_quality_gate_refuses_a_poor_build_unless_forced(
    tokenwire_home: Path, tmp_path: Path
) -> None:
    options = PrepareOptions(source=_gguf(tmp_path), output=tmp_path / "out")
    with pytest.raises(QualityGateError, match=r"85\.0%.*--force"):
        prepare_model(
            options, export=FakeExport(), measure=FakeMeasure(top1=0.85), stream=io.StringIO()
        )
    assert not (tmp_path / "out").exists()

    forced = PrepareOptions(source=options.source, output=options.output, force=True)
    result = prepare_model(
        forced, export=FakeExport(), measure=FakeMeasure(top1=0.85), stream=io.StringIO()
    )
    assert result.manifest.quality is not None
    assert result.manifest.quality.top1_agreement == 0.85


def test_fp32_build_skips_the_quality_gate(tokenwire_home: Path, tmp_path: Path) -> None:
    measure = FakeMeasure()
    result = prepare_model(
        PrepareOptions(source=_gguf(tmp_path), precision="fp32"),
        export=FakeExport(),
        measure=measure,
        stream=io.StringIO(),
    )
    assert result.manifest.quality is None
    assert measure.seen == []
    assert result.directory.name == "tiny-fp32"


def test_half_written_output_is_not_taken_for_a_finished_one(
    tokenwire_home: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "model.onnx").write_bytes(b"partial")  # no manifest: not finished
    export = FakeExport()
    with pytest.raises(PrepareError, match="is not a prepared model"):
        prepare_model(
            PrepareOptions(source=_gguf(tmp_path), output=output),
            export=export,
            stream=io.StringIO(),
        )
    assert export.calls == []
    assert (output / "model.onnx").read_bytes() == b"partial"  # a user's files are never replaced


def test_manifest_without_its_model_file_is_rebuilt(tokenwire_home: Path, tmp_path: Path) -> None:
    options = PrepareOptions(source=_gguf(tmp_path), output=tmp_path / "out")
    export = FakeExport()
    prepare_model(options, export=export, measure=FakeMeasure(), stream=io.StringIO())
    (tmp_path / "out" / "model.onnx").unlink()
    result = prepare_model(options, export=export, measure=FakeMeasure(), stream=io.StringIO())
    assert result.built and (tmp_path / "out" / "model.onnx").is_file()


def test_dirs_abandoned_by_dead_runs_are_removed(tokenwire_home: Path, tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid is now free: a run that died
    abandoned = tmp_path / f".out.staging-{child.pid}-abc"
    abandoned.mkdir()
    (abandoned / "model.onnx").write_bytes(b"half")
    log = io.StringIO()
    prepare_model(
        PrepareOptions(source=_gguf(tmp_path), output=tmp_path / "out"),
        export=FakeExport(),
        measure=FakeMeasure(),
        stream=log,
    )
    assert not abandoned.exists()
    assert "interrupted run" in log.getvalue()


def test_progress_names_each_stage_with_seconds(tokenwire_home: Path, tmp_path: Path) -> None:
    log = io.StringIO()
    result = prepare_model(
        PrepareOptions(source=_gguf(tmp_path)),
        export=FakeExport(),
        measure=FakeMeasure(),
        stream=log,
    )
    text = log.getvalue()
    for stage in ("find and hash the source", "fake export", "teacher-forced logits against fp32"):
        assert re.search(rf"\] [^\n]*{stage} done in \d+\.\d s", text), stage
    assert result.timings[0].name == "find and hash the source"
    assert "prepared tiny-int8" in text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (PrepareOptions(precision="int3"), "precision 'int3'"),  # type: ignore[arg-type]
        (PrepareOptions(exporter="torch"), "exporter 'torch'"),  # type: ignore[arg-type]
        (PrepareOptions(name="../escape"), "name '../escape'"),
    ],
)
def test_bad_options_are_rejected_before_any_work(options: PrepareOptions, message: str) -> None:
    with pytest.raises(PrepareError, match=message):
        prepare_model(options, export=FakeExport(), stream=io.StringIO())


def test_optimum_builds_get_their_own_default_name(tokenwire_home: Path, tmp_path: Path) -> None:
    result = prepare_model(
        PrepareOptions(source=_gguf(tmp_path), exporter="optimum"),
        export=FakeExport(),
        measure=FakeMeasure(),
        stream=io.StringIO(),
    )
    assert result.directory == tokenwire_home / "models" / "tiny-int8-optimum"
    assert result.manifest.exporter == "optimum"


@dataclass
class RecommendingExport(FakeExport):
    """A source whose generation_config.json recommends sampling settings."""

    generation: dict[str, object] = field(
        default_factory=lambda: {"eos_token_id": 0, "temperature": 0.6, "top_p": 0.95, "top_k": 20}
    )

    def __call__(
        self,
        source: ModelSource,
        out_dir: Path,
        work_dir: Path,
        precision: str,
        progress: ProgressReporter,
        log_file: Path,
    ) -> ExportedModel:
        exported = super().__call__(source, out_dir, work_dir, precision, progress, log_file)
        (out_dir / "generation_config.json").write_text(json.dumps(self.generation))
        return exported


def test_manifest_records_the_sources_recommended_sampling(
    tokenwire_home: Path, tmp_path: Path
) -> None:
    result = prepare_model(
        PrepareOptions(source=_gguf(tmp_path)),
        export=RecommendingExport(),
        measure=FakeMeasure(),
        stream=io.StringIO(),
    )
    defaults = ModelManifest.read(result.directory).sampling_defaults
    assert defaults == SamplingDefaults(0.6, 0.95, 20, source="generation_config.json")


def test_a_source_without_sampling_records_none_and_the_default_model_its_card(
    tokenwire_home: Path,
    tmp_path: Path,
    fake_default_package: Path,
) -> None:
    plain = prepare_model(
        PrepareOptions(source=_gguf(tmp_path)),
        export=FakeExport(),
        measure=FakeMeasure(),
        stream=io.StringIO(),
    )
    defaults = ModelManifest.read(plain.directory).sampling_defaults
    assert defaults is not None and (defaults.temperature, defaults.top_p, defaults.top_k) == (
        None,
        None,
        None,
    )
    default = prepare_model(
        PrepareOptions(), export=FakeExport(), measure=FakeMeasure(), stream=io.StringIO()
    )
    assert ModelManifest.read(default.directory).sampling_defaults == SMOLLM2_CARD_DEFAULTS
    assert SMOLLM2_CARD_DEFAULTS.temperature == 0.2 and SMOLLM2_CARD_DEFAULTS.top_p == 0.9


def test_an_up_to_date_build_from_before_sampling_defaults_gets_them_without_a_rebuild(
    tokenwire_home: Path,
    fake_default_package: Path,
) -> None:
    export = FakeExport()
    first = prepare_model(
        PrepareOptions(), export=export, measure=FakeMeasure(), stream=io.StringIO()
    )
    manifest_file = first.directory / "manifest.json"
    old = json.loads(manifest_file.read_text())
    del old["sampling_defaults"]  # as tokenwire wrote it before this field existed
    manifest_file.write_text(json.dumps(old))
    assert ModelManifest.read(first.directory).sampling_defaults is None

    again = prepare_model(
        PrepareOptions(), export=export, measure=FakeMeasure(), stream=io.StringIO()
    )

    assert not again.built and len(export.calls) == 1
    assert again.manifest.sampling_defaults == SMOLLM2_CARD_DEFAULTS
    assert ModelManifest.read(first.directory) == again.manifest
    assert again.manifest == replace(first.manifest, sampling_defaults=SMOLLM2_CARD_DEFAULTS)
    stamp = manifest_file.stat().st_mtime_ns
    prepare_model(PrepareOptions(), export=export, measure=FakeMeasure(), stream=io.StringIO())
    assert manifest_file.stat().st_mtime_ns == stamp  # filled in once, then left alone


def test_asking_for_a_prefill_graph_rebuilds_a_build_without_one(
    tokenwire_home: Path, tmp_path: Path
) -> None:
    """The fake export has no real graph to derive one from: the build says so and records
    none. The real build: tests/backends/onnx/test_prefill_graph_smollm2.py."""
    options = PrepareOptions(source=_gguf(tmp_path), output=tmp_path / "out")
    export = FakeExport()
    prepare_model(options, export=export, measure=FakeMeasure(), stream=io.StringIO())
    log = io.StringIO()

    asked = replace(options, prefill_graph=True)
    result = prepare_model(asked, export=export, measure=FakeMeasure(), stream=log)

    assert result.built and len(export.calls) == 2
    assert result.manifest.prefill_model_file is None
    assert "no prefill graph" in log.getvalue()
