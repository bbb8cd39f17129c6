"""The prepared SmolLM2 int8 that the prompt-cache and middlewares benchmarks serve."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks._shared.paths import REPO

MODEL_NAME = "smollm2-135m-instruct-int8"


def find_model(explicit: Path | None) -> Path:
    """The prepared model: `--model`, else the default model in the usual homes."""
    candidates = [explicit] if explicit is not None else []
    home = os.environ.get("TOKENWIRE_HOME")
    if home:
        candidates.append(Path(home) / "models" / MODEL_NAME)
    candidates += [
        Path.home() / ".cache" / "tokenwire" / "models" / MODEL_NAME,
        REPO / ".cache" / "tokenwire" / "models" / MODEL_NAME,
        REPO / ".cache" / "models" / MODEL_NAME,
        Path("/tmp/twhome/models") / MODEL_NAME,
    ]
    for candidate in candidates:
        if candidate is not None and (candidate / "manifest.json").is_file():
            return candidate
    raise FileNotFoundError(f"no prepared {MODEL_NAME}; run `tokenwire prepare` or pass --model")
