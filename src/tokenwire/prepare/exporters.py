"""The two export paths, each from a source to a staging dir holding model and assets.

Both start from the same Hugging Face dir (converted from GGUF, or a working copy of the
user's dir) with a repaired tokenizer; they differ in the graph they emit: `builder` (shared
KV buffer, no position ids) or `optimum` (concat KV, position ids).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.prepare._extras import installed_versions
from tokenwire.prepare.builder import run_builder
from tokenwire.prepare.gguf_to_hf import convert_gguf_to_hf
from tokenwire.prepare.optimum_export import (
    ensure_optimum_env,
    env_versions,
    make_config_compatible,
    optimum_env_dir,
    quantize_matmul_nbits,
    read_concat_kv_contract,
    run_optimum_export,
)
from tokenwire.prepare.progress import ProgressReporter
from tokenwire.prepare.source import ModelSource
from tokenwire.prepare.source_grid import encode_on_source_grid
from tokenwire.prepare.tokenizer_repair import (
    SpecialTokenIds,
    TokenizerRepair,
    copy_assets,
    repair_for_gguf_pre_tokenizer,
    repair_tokenizer,
)

# Weight files are linked into the working copy of a user's dir, not copied: they are large
# and never edited.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_BITS = {"int8": 8, "int4": 4}


@dataclass(frozen=True, slots=True)
class ExportedModel:
    """What an export left in the staging dir, and what the manifest needs to know of it."""

    kv: KVContract
    special_ids: SpecialTokenIds
    reference_model: Path | None
    """The fp32 model file the quality gate compares against; None for an fp32 build."""
    versions: dict[str, str] = field(default_factory=dict)
    last_position_logits: bool = False
    """Whether to trim the graph's logits to the last position once the quality gate passed
    (`last_logits`): what the real exporters want; fakes in tests write no real graph."""
    prefill_graph: bool = False
    """Whether the prefill graph can be built from `reference_model` (`prefill_graph`): the
    builder's quantized builds, whose KV layout it shares."""


class ExportFn(Protocol):
    def __call__(
        self,
        source: ModelSource,
        out_dir: Path,
        work_dir: Path,
        precision: str,
        progress: ProgressReporter,
        log_file: Path,
    ) -> ExportedModel: ...


def prepare_hf_dir(
    source: ModelSource, work_dir: Path, progress: ProgressReporter, log_file: Path
) -> tuple[Path, SpecialTokenIds]:
    """A Hugging Face dir under `work_dir` with a repaired tokenizer; the source stays untouched."""
    hf_dir = work_dir / "hf"
    if source.kind == "gguf":
        with progress.stage("convert GGUF to a Hugging Face fp32 dir (transformers)"):
            info = convert_gguf_to_hf(source.path, hf_dir, log_file)
        repair = repair_for_gguf_pre_tokenizer(info.pre_tokenizer)
    else:
        with progress.stage("copy the Hugging Face dir (weights linked)"):
            _working_copy(source.path, hf_dir)
        repair = TokenizerRepair(from_gguf=False)
    with progress.stage("repair the tokenizer"):
        special = repair_tokenizer(hf_dir, repair)
    return hf_dir, special


def _working_copy(source: Path, target: Path) -> None:
    for item in source.rglob("*"):
        relative = item.relative_to(source)
        if any(part.startswith(".") for part in relative.parts):
            continue
        destination = target / relative
        if item.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        if item.suffix in _WEIGHT_SUFFIXES:
            os.symlink(item.resolve(), destination)
        else:
            shutil.copyfile(item, destination)


def export_with_builder(
    source: ModelSource,
    out_dir: Path,
    work_dir: Path,
    precision: str,
    progress: ProgressReporter,
    log_file: Path,
) -> ExportedModel:
    """The default path: the onnxruntime-genai model builder, plus an fp32 reference build.

    int4 from a GGUF source keeps the source's own 4-bit grid (`source_grid`) instead of
    re-quantizing; the builder's int4 stays for other sources, and for a GGUF whose weights
    are on no 4-bit grid the pass can rebuild.
    """
    hf_dir, special = prepare_hf_dir(source, work_dir, progress, log_file)
    cache = work_dir / "builder-cache"
    reference = None
    if precision == "fp32":
        with progress.stage("build the ONNX graph with the onnxruntime-genai builder (fp32)"):
            kv = run_builder(hf_dir, out_dir, precision, cache, log_file)
    else:
        fp32_dir = work_dir / "fp32"
        with progress.stage("build the fp32 graph (the quality gate's reference)"):
            kv = run_builder(hf_dir, fp32_dir, "fp32", cache, log_file)
        reference = fp32_dir / "model.onnx"
        on_grid = precision == "int4" and source.kind == "gguf"
        if not (on_grid and _encode_on_source_grid(fp32_dir, out_dir, progress)):
            stage = f"build the ONNX graph with the onnxruntime-genai builder ({precision})"
            with progress.stage(stage):
                kv = run_builder(hf_dir, out_dir, precision, cache, log_file)
    copy_assets(hf_dir, out_dir)
    return ExportedModel(
        kv,
        special,
        reference,
        installed_versions(),
        last_position_logits=True,
        prefill_graph=reference is not None,
    )


def _encode_on_source_grid(fp32_dir: Path, out_dir: Path, progress: ProgressReporter) -> bool:
    """The source-grid pass from the fp32 build into `out_dir`; False (and nothing left in
    `out_dir`) when no weight matrix is on a 4-bit grid, e.g. a GGUF of another block type."""
    with progress.stage("encode MatMul weights on the GGUF's own 4-bit grid"):
        encoding = encode_on_source_grid(fp32_dir / "model.onnx", out_dir / "model.onnx")
    if encoding.on_grid == 0:
        progress.note("no weight matrix is on a 4-bit block grid; re-quantizing instead")
        for item in out_dir.glob("model.onnx*"):
            item.unlink()
        return False
    progress.note(
        f"{encoding.on_grid} weight matrices on their source grid (4-bit), "
        f"{encoding.bits[8]} off it (8-bit)"
    )
    _copy_builder_files(fp32_dir, out_dir)
    return True


def _copy_builder_files(build_dir: Path, out_dir: Path) -> None:
    """The builder's files other than the graph (genai_config.json and the like)."""
    for item in build_dir.iterdir():
        if item.is_file() and not item.name.startswith("model.onnx"):
            shutil.copyfile(item, out_dir / item.name)


def export_with_optimum(
    source: ModelSource,
    out_dir: Path,
    work_dir: Path,
    precision: str,
    progress: ProgressReporter,
    log_file: Path,
) -> ExportedModel:
    """optimum's `text-generation-with-past` export in its own environment; MatMulNBits quantization."""
    hf_dir, special = prepare_hf_dir(source, work_dir, progress, log_file)
    make_config_compatible(hf_dir)
    with progress.stage("set up the optimum toolchain environment"):
        python = ensure_optimum_env(optimum_env_dir(), progress)
    log = log_file
    fp32_dir = out_dir if precision == "fp32" else work_dir / "fp32"
    with progress.stage("export the ONNX graph with optimum (fp32)"):
        run_optimum_export(python, hf_dir, fp32_dir, log)
    reference = None
    if precision != "fp32":
        bits = _BITS[precision]
        with progress.stage(f"quantize MatMul weights to {bits}-bit blocks (MatMulNBits)"):
            quantize_matmul_nbits(
                python, fp32_dir / "model.onnx", out_dir / "model.onnx", bits, log
            )
        reference = fp32_dir / "model.onnx"
    copy_assets(hf_dir, out_dir)
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    kv = read_concat_kv_contract(
        out_dir / "model.onnx", int(config.get("max_position_embeddings", 2048))
    )
    versions = installed_versions(("tokenwire", "tokenizers", "onnxruntime"))
    if source.kind == "gguf":
        versions.update(installed_versions(("torch", "transformers", "gguf", "accelerate")))
    versions.update({f"optimum-env/{k}": v for k, v in env_versions(python).items()})
    return ExportedModel(kv, special, reference, versions, last_position_logits=True)


EXPORTERS: dict[str, ExportFn] = {"builder": export_with_builder, "optimum": export_with_optimum}
# Bump an exporter's recipe when what it builds changes (flags, repair, quantization): builds
# recorded with an older recipe are then no longer up to date and get rebuilt.
RECIPES: dict[str, str] = {"builder": "3", "optimum": "3"}
