from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.prepare._subprocess import log_tail, run_logged
from tokenwire.prepare.builder import builder_command, read_genai_kv_contract
from tokenwire.prepare.errors import PrepareError

GENAI_CONFIG = {
    "model": {
        "context_length": 8192,
        "eos_token_id": 2,
        "decoder": {
            "head_size": 64,
            "num_hidden_layers": 30,
            "num_key_value_heads": 3,
            "inputs": {
                "input_ids": "input_ids",
                "attention_mask": "attention_mask",
                "past_key_names": "past_key_values.%d.key",
                "past_value_names": "past_key_values.%d.value",
            },
            "outputs": {
                "logits": "logits",
                "present_key_names": "present.%d.key",
                "present_value_names": "present.%d.value",
            },
        },
    }
}


def test_genai_config_gives_the_shared_kv_contract(tmp_path: Path) -> None:
    path = tmp_path / "genai_config.json"
    path.write_text(json.dumps(GENAI_CONFIG))
    assert read_genai_kv_contract(path) == KVContract(
        layout="shared", position_ids=False, num_layers=30, num_kv_heads=3, head_size=64,
        max_context=8192, past_key="past_key_values.{i}.key", past_value="past_key_values.{i}.value",
        present_key="present.{i}.key", present_value="present.{i}.value",
    )  # fmt: skip


def test_unreadable_genai_config_is_a_prepare_error(tmp_path: Path) -> None:
    path = tmp_path / "genai_config.json"
    path.write_text(json.dumps({"model": {}}))
    with pytest.raises(PrepareError, match="cannot read the KV contract"):
        read_genai_kv_contract(path)


def test_builder_command_uses_the_measured_flags(tmp_path: Path) -> None:
    command = builder_command(tmp_path / "hf", tmp_path / "out", "int8", tmp_path / "cache")
    assert command[:3] == [sys.executable, "-m", "onnxruntime_genai.models.builder"]
    assert command[3:] == [
        "-i", str(tmp_path / "hf"), "-o", str(tmp_path / "out"), "-p", "int8", "-e", "cpu",
        "-c", str(tmp_path / "cache"),
    ]  # fmt: skip


def test_failed_step_raises_with_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "step.log"
    script = (
        "import sys; print('50%\\r100%'); print('boom: bad weights', file=sys.stderr); sys.exit(3)"
    )
    with pytest.raises(PrepareError, match=r"(?s)exit status 3.*100%\nboom: bad weights"):
        run_logged([sys.executable, "-c", script], log, what="the step")


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("\n".join(f"line {i}" for i in range(40)))
    assert log_tail(log, lines=2) == "line 38\nline 39"
