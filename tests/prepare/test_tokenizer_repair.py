from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tokenwire.prepare.errors import PrepareError
from tokenwire.prepare.tokenizer_repair import (
    TokenizerRepair,
    copy_assets,
    repair_for_gguf_pre_tokenizer,
    repair_tokenizer,
)

from ._support import CHAT_TEMPLATE, write_hf_dir

GGUF_REPAIR = TokenizerRepair(from_gguf=True, split_digits=True)


def _tokens(directory: Path, text: str) -> list[str]:
    tokens: list[str] = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(text).tokens
    return tokens


def _json(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(path.read_text())
    return data


def test_repair_splits_digits_one_by_one(tmp_path: Path) -> None:
    hf = write_hf_dir(tmp_path / "hf")
    assert any(len(t) > 1 and t.isdigit() for t in _tokens(hf, "2024 12345"))  # merged before

    repair_tokenizer(hf, GGUF_REPAIR)

    digits = [t for t in _tokens(hf, "2024 12345") if any(c.isdigit() for c in t)]
    assert digits == list("202412345")


def test_repair_removes_the_bos_and_keeps_decoding_exact(tmp_path: Path) -> None:
    hf = write_hf_dir(tmp_path / "hf")
    before = Tokenizer.from_file(str(hf / "tokenizer.json"))
    assert before.encode("hello").ids[0] == before.token_to_id("<|im_start|>")

    ids = repair_tokenizer(hf, GGUF_REPAIR)

    after = Tokenizer.from_file(str(hf / "tokenizer.json"))
    encoded = after.encode("hello world 42")
    assert after.token_to_id("<|im_start|>") not in encoded.ids
    assert after.decode(encoded.ids) == "hello world 42"
    assert ids.bos_token_id is None


def test_repair_makes_eos_and_pad_agree_everywhere(tmp_path: Path) -> None:
    hf = write_hf_dir(tmp_path / "hf")
    im_end = Tokenizer.from_file(str(hf / "tokenizer.json")).token_to_id("<|im_end|>")

    ids = repair_tokenizer(hf, GGUF_REPAIR)

    # The tokenizer's eos (<|im_end|>) comes first; the generation config's 0 is kept.
    assert ids.eos_token_ids == (im_end, 0)
    assert ids.pad_token_id == im_end
    generation = _json(hf / "generation_config.json")
    assert generation["eos_token_id"] == [im_end, 0]
    assert generation["pad_token_id"] == im_end
    assert _json(hf / "config.json")["eos_token_id"] == [im_end, 0]
    config = _json(hf / "tokenizer_config.json")
    assert config["model_input_names"] == ["input_ids", "attention_mask"]
    assert config["eos_token"] == config["pad_token"] == "<|im_end|>"
    assert config["add_bos_token"] is False


def test_repair_is_idempotent(tmp_path: Path) -> None:
    hf = write_hf_dir(tmp_path / "hf")
    repair_tokenizer(hf, GGUF_REPAIR)
    once = {p.name: p.read_text() for p in hf.iterdir()}
    repair_tokenizer(hf, GGUF_REPAIR)
    assert {p.name: p.read_text() for p in hf.iterdir()} == once


def test_hf_dir_tokenizer_is_trusted_and_its_bos_reported(tmp_path: Path) -> None:
    hf = write_hf_dir(tmp_path / "hf")
    original = (hf / "tokenizer.json").read_text()

    ids = repair_tokenizer(hf, TokenizerRepair(from_gguf=False))

    assert (hf / "tokenizer.json").read_text() == original
    assert ids.bos_token_id == 1  # its post-processor prepends <|im_start|>
    assert "add_bos_token" not in _json(hf / "tokenizer_config.json")


def test_only_digit_splitting_llama_cpp_pre_tokenizers_get_the_digit_split() -> None:
    assert repair_for_gguf_pre_tokenizer("smollm").split_digits
    assert not repair_for_gguf_pre_tokenizer("llama-bpe").split_digits
    assert not repair_for_gguf_pre_tokenizer(None).split_digits


def test_chat_template_is_extracted_from_tokenizer_config(tmp_path: Path) -> None:
    hf = write_hf_dir(tmp_path / "hf", template_in_config=True)
    assert not (hf / "chat_template.jinja").exists()
    repair_tokenizer(hf, GGUF_REPAIR)
    assert (hf / "chat_template.jinja").read_text() == CHAT_TEMPLATE


def test_missing_eos_is_an_error(tmp_path: Path) -> None:
    hf = write_hf_dir(tmp_path / "hf")
    (hf / "tokenizer_config.json").write_text("{}")
    (hf / "generation_config.json").write_text("{}")
    with pytest.raises(PrepareError, match="no eos"):
        repair_tokenizer(hf, GGUF_REPAIR)


def test_missing_tokenizer_json_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match=r"no tokenizer\.json"):
        repair_tokenizer(tmp_path, GGUF_REPAIR)


def test_copy_assets_overwrites_exporter_copies(tmp_path: Path) -> None:
    hf = write_hf_dir(tmp_path / "hf")
    out = tmp_path / "out"
    out.mkdir()
    (out / "tokenizer.json").write_text("stale")
    copied = copy_assets(hf, out)
    assert set(copied) == {
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "generation_config.json",
    }
    assert (out / "tokenizer.json").read_text() == (hf / "tokenizer.json").read_text()
