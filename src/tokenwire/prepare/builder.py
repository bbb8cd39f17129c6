"""Export with the onnxruntime-genai model builder, run as a subprocess, and read its contract.

The builder emits fused GroupQueryAttention with a KV buffer shared in place between past and
present (the `shared` KV layout) and no `position_ids` input. Its `--help` crashes; the flags
work (FACTS.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.prepare._extras import BUILDER_MODULES, require_modules
from tokenwire.prepare._subprocess import run_logged
from tokenwire.prepare.errors import PrepareError

GENAI_CONFIG = "genai_config.json"
BUILDER_MODULE = "onnxruntime_genai.models.builder"


def builder_command(
    hf_dir: Path, out_dir: Path, precision: str, cache_dir: Path, *, execution_provider: str = "cpu"
) -> list[str]:
    return [
        sys.executable, "-m", BUILDER_MODULE,
        "-i", str(hf_dir), "-o", str(out_dir), "-p", precision,
        "-e", execution_provider, "-c", str(cache_dir),
    ]  # fmt: skip


def run_builder(
    hf_dir: Path, out_dir: Path, precision: str, cache_dir: Path, log_file: Path
) -> KVContract:
    """Build `out_dir/model.onnx` (+ `.data`) from `hf_dir`; return its KV contract.

    Raises:
        MissingExtraError: the `prepare` extra is not installed.
        PrepareError: the builder failed (the message ends with its log's tail).
    """
    require_modules(BUILDER_MODULES)
    run_logged(
        builder_command(hf_dir, out_dir, precision, cache_dir),
        log_file,
        what=f"the onnxruntime-genai model builder ({precision})",
    )
    return read_genai_kv_contract(out_dir / GENAI_CONFIG)


def _template(name: str) -> str:
    # genai_config uses printf-style `%d`; the manifest uses `{i}`.
    return name.replace("%d", "{i}")


def read_genai_kv_contract(path: Path) -> KVContract:
    """The KV contract of a builder graph from its `genai_config.json`."""
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        model = config["model"]
        decoder = model["decoder"]
        inputs, outputs = decoder["inputs"], decoder["outputs"]
        return KVContract(
            layout="shared",
            position_ids="position_ids" in inputs,
            num_layers=int(decoder["num_hidden_layers"]),
            num_kv_heads=int(decoder["num_key_value_heads"]),
            head_size=int(decoder["head_size"]),
            max_context=int(model["context_length"]),
            past_key=_template(inputs["past_key_names"]),
            past_value=_template(inputs["past_value_names"]),
            present_key=_template(outputs["present_key_names"]),
            present_value=_template(outputs["present_value_names"]),
        )
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise PrepareError(f"cannot read the KV contract from {path}: {exc!r}") from exc
