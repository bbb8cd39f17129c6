"""`manifest.json`: what `tokenwire prepare` built and the KV contract the backend must drive.

Written by the preparer, read by `OnnxBackend`; the only coupling between the two.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
DEFAULT_MODEL_NAME = "smollm2-135m-instruct-int8"

LogitsPositions = Literal["all", "last"]
"""`all`: `logits` is `[batch, sequence, vocab]`; `last`: `[batch, 1, vocab]`, the last
position only (what `tokenwire prepare` builds since builder recipe 2)."""

KVLayout = Literal["shared", "concat"]
"""`shared`: one preallocated buffer bound as both past and present (onnxruntime-genai
builder, GroupQueryAttention). `concat`: present = Concat(past, new) (optimum)."""


def tokenwire_home() -> Path:
    return Path(os.environ.get("TOKENWIRE_HOME") or Path.home() / ".cache" / "tokenwire")


def models_dir() -> Path:
    return tokenwire_home() / "models"


def default_model_dir() -> Path:
    return models_dir() / DEFAULT_MODEL_NAME


@dataclass(frozen=True, slots=True)
class KVContract:
    """How the decoder graph takes and returns its KV cache.

    Tensor names are templates with `{i}` for the layer index. Shapes are
    `[batch, num_kv_heads, sequence, head_size]`.
    """

    layout: KVLayout
    position_ids: bool
    num_layers: int
    num_kv_heads: int
    head_size: int
    max_context: int
    dtype: str = "float32"
    past_key: str = "past_key_values.{i}.key"
    past_value: str = "past_key_values.{i}.value"
    present_key: str = "present.{i}.key"
    present_value: str = "present.{i}.value"


@dataclass(frozen=True, slots=True)
class Quality:
    """Teacher-forced agreement of this build with the fp32 build on a fixed chat text."""

    top1_agreement: float
    mean_kl: float
    reference: str = "fp32"
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class SamplingDefaults:
    """Sampling a model's authors recommend, for requests that leave a field out.

    None: no recommendation for that field. `source` says where the values came from (a
    `generation_config.json`, a model card), for whoever reads the manifest.
    """

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class ModelManifest:
    name: str
    model_id: str
    exporter: Literal["builder", "optimum", "fixture"]
    precision: str
    kv: KVContract
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    bos_token_id: int | None = None
    model_file: str = "model.onnx"
    tokenizer_file: str = "tokenizer.json"
    chat_template_file: str | None = "chat_template.jinja"
    generation_config_file: str | None = "generation_config.json"
    source: dict[str, str] = field(default_factory=dict)
    quality: Quality | None = None
    versions: dict[str, str] = field(default_factory=dict)
    logits: LogitsPositions = "all"
    prefill_model_file: str | None = None
    """A second graph for prompt chunks, same KV contract and logits positions (the
    builder's int8 GEMM graph, `prepare.prefill_graph`); None: the model file runs them."""
    prefill_bf16_file: str | None = None
    """The same for OpenVINO in bf16: the fp32 build as an OpenVINO model (`.xml`, weights in
    the `.bin` beside it; `prepare.openvino_prefill`), its logits slice an input."""
    # None: written before tokenwire recorded sampling defaults (read as "no defaults";
    # `tokenwire prepare` fills it in). A model without any records an empty SamplingDefaults.
    sampling_defaults: SamplingDefaults | None = None
    format: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def write(self, directory: Path) -> Path:
        path = directory / MANIFEST_NAME
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelManifest:
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(
                f"manifest format {data.get('format')!r} is not supported (expected {MANIFEST_FORMAT})"
            )
        fields = dict(data)
        fields["kv"] = KVContract(**fields["kv"])
        fields["eos_token_ids"] = tuple(fields["eos_token_ids"])
        if fields.get("logits", "all") not in ("all", "last"):
            raise ValueError(f"manifest logits must be 'all' or 'last', got {fields['logits']!r}")
        if fields.get("quality") is not None:
            fields["quality"] = Quality(**fields["quality"])
        if fields.get("sampling_defaults") is not None:
            fields["sampling_defaults"] = SamplingDefaults(**fields["sampling_defaults"])
        return cls(**fields)

    @classmethod
    def read(cls, directory: Path) -> ModelManifest:
        path = Path(directory) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{directory} holds no prepared model ({MANIFEST_NAME} is missing); "
                "run `tokenwire prepare` first"
            ) from None
        return cls.from_dict(data)
