from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tokenwire.prepare.errors import PrepareError
from tokenwire.prepare.optimum_export import (
    OPTIMUM_REQUIREMENTS,
    ensure_optimum_env,
    env_python,
    make_config_compatible,
    optimum_env_dir,
    read_concat_kv_contract,
)
from tokenwire.prepare.progress import ProgressReporter

from ._support import write_logits_model


def test_optimum_env_lives_under_tokenwire_home(tokenwire_home: Path) -> None:
    assert optimum_env_dir() == tokenwire_home / "envs" / "optimum"


def test_optimum_requirements_pin_torch_exactly() -> None:
    assert "torch==2.13.0" in OPTIMUM_REQUIREMENTS
    assert "optimum-onnx[onnxruntime]==0.1.0" in OPTIMUM_REQUIREMENTS


def test_existing_env_with_the_same_requirements_is_reused(tmp_path: Path) -> None:
    env = tmp_path / "optimum"
    env.mkdir()
    (env / ".tokenwire-requirements").write_text("\n".join(OPTIMUM_REQUIREMENTS) + "\n")
    # Reuse must not spawn anything: no venv or pip exists in this dir to run.
    assert ensure_optimum_env(env, ProgressReporter()) == env_python(env)


def test_config_from_transformers_5_is_made_readable_by_4x(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(
        {"dtype": "float32", "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}
    ))  # fmt: skip
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "TokenizersBackend"})
    )
    make_config_compatible(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["rope_theta"] == 100000.0
    assert "rope_scaling" not in config
    assert config["torch_dtype"] == "float32"
    tokenizer_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_scaled_rope_keeps_its_scaling(tmp_path: Path) -> None:
    rope = {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0}
    (tmp_path / "config.json").write_text(json.dumps({"rope_parameters": rope}))
    make_config_compatible(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0}


def test_concat_contract_is_read_from_the_graph(tmp_path: Path) -> None:
    model = write_logits_model(
        tmp_path / "m.onnx", np.eye(4, dtype=np.float32), num_layers=3, heads=2, head_size=8,
        position_ids=True,
    )  # fmt: skip
    kv = read_concat_kv_contract(model, max_context=512)
    assert (kv.layout, kv.position_ids, kv.num_layers, kv.num_kv_heads, kv.head_size, kv.max_context) == (
        "concat", True, 3, 2, 8, 512
    )  # fmt: skip
    assert kv.past_key.format(i=2) == "past_key_values.2.key"
    assert kv.present_value.format(i=0) == "present.0.value"


def test_graph_without_kv_inputs_is_rejected(tmp_path: Path) -> None:
    model = write_logits_model(tmp_path / "m.onnx", np.eye(4, dtype=np.float32), num_layers=0)
    with pytest.raises(PrepareError, match="no past_key_values"):
        read_concat_kv_contract(model, max_context=16)
