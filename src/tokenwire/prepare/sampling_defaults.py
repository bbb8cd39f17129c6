"""The sampling a model's authors recommend, recorded in its manifest at prepare time."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tokenwire.backends.onnx.manifest import SamplingDefaults

GENERATION_CONFIG = "generation_config.json"

# The default SmolLM2 GGUF carries no sampling settings, and its HF repo's
# generation_config.json sets none either; the model card's own example
# (huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct) samples at these. At 1.0 the 135M
# model answers "Name the capital city of France." with nonsense.
SMOLLM2_CARD_DEFAULTS = SamplingDefaults(
    temperature=0.2,
    top_p=0.9,
    source="SmolLM2-135M-Instruct model card (huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)",
)


def read_sampling_defaults(model_dir: Path, *, default_model: bool) -> SamplingDefaults:
    """`temperature`, `top_p` and `top_k` from `model_dir`'s `generation_config.json`.

    Like vLLM, only these values are read, whatever its `do_sample` says; a value out of
    range is left out. With none there, the default model gets its model card's values and
    any other model an empty `SamplingDefaults` (neutral sampling).
    """
    config = _read_json(model_dir / GENERATION_CONFIG)
    temperature = _number(config.get("temperature"), lambda x: x >= 0)
    top_p = _number(config.get("top_p"), lambda x: 0 < x <= 1)
    top_k = _number(config.get("top_k"), lambda x: x >= 0 and float(x).is_integer())
    if (temperature, top_p, top_k) != (None, None, None):
        return SamplingDefaults(
            temperature=temperature,
            top_p=top_p,
            top_k=None if top_k is None else int(top_k),
            source=GENERATION_CONFIG,
        )
    if default_model:
        return SMOLLM2_CARD_DEFAULTS
    return SamplingDefaults(source=f"none recommended (no sampling in {GENERATION_CONFIG})")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: object, allowed: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and allowed(number) else None
