"""Check for the optional toolchain without importing it, and record its versions."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Iterable

from tokenwire.prepare.errors import PREPARE_EXTRA_HINT, MissingExtraError

# Module name -> distribution name, for the packages of the `prepare` extra that each step uses.
GGUF_TO_HF_MODULES = {
    "torch": "torch",
    "transformers": "transformers",
    "gguf": "gguf",
    "accelerate": "accelerate",
}
BUILDER_MODULES = {
    "onnxruntime_genai": "onnxruntime-genai",
    "onnx": "onnx",
    "onnx_ir": "onnx-ir",
    "torch": "torch",
    "transformers": "transformers",
}
TOOLCHAIN_DISTRIBUTIONS = (
    "torch",
    "transformers",
    "gguf",
    "accelerate",
    "onnxruntime",
    "onnxruntime-genai",
    "onnx",
    "onnx-ir",
    "tokenizers",
    "tokenwire",
)


def require_modules(modules: dict[str, str], *, hint: str = PREPARE_EXTRA_HINT) -> None:
    """Raise `MissingExtraError` naming every distribution whose module cannot be found.

    Uses `find_spec`, so nothing heavy is imported just to check.
    """
    missing = tuple(
        dist for module, dist in modules.items() if importlib.util.find_spec(module) is None
    )
    if missing:
        raise MissingExtraError(missing, hint=hint)


def installed_versions(distributions: Iterable[str] = TOOLCHAIN_DISTRIBUTIONS) -> dict[str, str]:
    """Versions of the installed distributions among `distributions`; absent ones are left out."""
    versions: dict[str, str] = {}
    for dist in distributions:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
