"""The optimum export path on the real SmolLM2, in its own toolchain environment.

The environment (`$TOKENWIRE_HOME/envs/optimum`, with `TOKENWIRE_HOME` set to
`$TOKENWIRE_TEST_HOME`, default `<repo>/.cache/home`) and the model
(`<repo>/.cache/models/smollm2-135m-instruct-int8-optimum`) are created on the first run
(a few minutes, needs the package index) and reused after.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.prepare import PrepareOptions, PrepareResult, prepare_model

from ._decode import greedy_chat

REPO = Path(__file__).resolve().parents[2]
HOME = Path(os.environ.get("TOKENWIRE_TEST_HOME") or REPO / ".cache" / "home")
MODEL_DIR = REPO / ".cache" / "models" / "smollm2-135m-instruct-int8-optimum"


@pytest.fixture(scope="module")
def prepared() -> Iterator[PrepareResult]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOKENWIRE_HOME", str(HOME))
        yield prepare_model(
            PrepareOptions(output=MODEL_DIR, exporter="optimum"), stream=io.StringIO()
        )


def test_optimum_build_has_the_concat_contract_and_passes_the_gate(prepared: PrepareResult) -> None:
    manifest = prepared.manifest
    assert (manifest.exporter, manifest.precision) == ("optimum", "int8")
    assert manifest.kv == KVContract(
        layout="concat",
        position_ids=True,
        num_layers=30,
        num_kv_heads=3,
        head_size=64,
        max_context=8192,
    )
    assert manifest.quality is not None and manifest.quality.top1_agreement >= 0.9
    assert manifest.versions["optimum-env/transformers"].startswith("4.")
    assert manifest.versions["optimum-env/optimum-onnx"] == "0.1.0"


def test_optimum_build_answers_paris(prepared: PrepareResult) -> None:
    answer = greedy_chat(prepared.directory, "Name the capital city of France.")
    assert "Paris" in answer, answer
