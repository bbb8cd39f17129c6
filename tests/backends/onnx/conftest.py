"""Tiny random-weight models in both KV contracts, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backends.onnx.tiny_models import write_model_dir

LAYOUTS = ("shared", "concat")


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {layout: write_model_dir(root / layout, layout) for layout in LAYOUTS}


@pytest.fixture(params=LAYOUTS)
def model_dir(request: pytest.FixtureRequest, tiny_model_dirs: dict[str, Path]) -> Path:
    """A prepared model directory, once per KV contract."""
    return tiny_model_dirs[request.param]
