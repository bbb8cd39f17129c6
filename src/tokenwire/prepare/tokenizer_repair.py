"""Repair a converted tokenizer so it tokenizes like the original, and collect its assets.

A GGUF carries its pre-tokenizer only as a name (`tokenizer.ggml.pre`); transformers'
GGUF loader rebuilds a plain ByteLevel pre-tokenizer from it, which merges digit runs that
llama.cpp (and the original model) split one by one. The repair edits `tokenizer.json` as
JSON, so it needs only the standard library, and makes eos/pad agree across the tokenizer,
model and generation configs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenwire.prepare.errors import PrepareError

# llama.cpp pre-tokenizer names whose regex splits every digit on its own (llama-vocab.cpp).
DIGIT_SPLIT_PRE_TOKENIZERS = frozenset({"smollm", "starcoder", "refact"})
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]
ASSET_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
)

_DIGITS = {"type": "Digits", "individual_digits": True}
_BYTE_LEVEL_DECODER = {
    "type": "ByteLevel",
    "add_prefix_space": True,
    "trim_offsets": True,
    "use_regex": True,
}
# The original SmolLM2 post-processor: ByteLevel offsets only, no BOS (the chat template
# opens every turn with its own `<|im_start|>`).
_BYTE_LEVEL_POST = {
    "type": "ByteLevel",
    "add_prefix_space": True,
    "trim_offsets": False,
    "use_regex": True,
}


@dataclass(frozen=True, slots=True)
class TokenizerRepair:
    """What to fix. `from_gguf` is False for Hugging Face dirs, whose tokenizer is trusted."""

    from_gguf: bool
    split_digits: bool = False


@dataclass(frozen=True, slots=True)
class SpecialTokenIds:
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    bos_token_id: int | None
    """The id the tokenizer itself puts before every text; None when it adds none."""


def repair_for_gguf_pre_tokenizer(pre: str | None) -> TokenizerRepair:
    return TokenizerRepair(from_gguf=True, split_digits=pre in DIGIT_SPLIT_PRE_TOKENIZERS)


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise PrepareError(f"{path} does not hold a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _has_type(node: Any, type_name: str) -> bool:
    if not isinstance(node, dict):
        return False
    if node.get("type") == type_name:
        return True
    return any(_has_type(child, type_name) for child in node.get("pretokenizers", []))


def _split_digits(pre_tokenizer: dict[str, Any] | None) -> dict[str, Any]:
    if _has_type(pre_tokenizer, "Digits"):
        return pre_tokenizer  # type: ignore[return-value]
    if pre_tokenizer is None:
        return dict(_DIGITS)
    if pre_tokenizer.get("type") == "Sequence":
        return {**pre_tokenizer, "pretokenizers": [dict(_DIGITS), *pre_tokenizer["pretokenizers"]]}
    return {"type": "Sequence", "pretokenizers": [dict(_DIGITS), pre_tokenizer]}


def repair_tokenizer_json(data: dict[str, Any], repair: TokenizerRepair) -> dict[str, Any]:
    """Return a repaired copy of a parsed `tokenizer.json`."""
    fixed = dict(data)
    if not repair.from_gguf:
        return fixed
    if repair.split_digits:
        fixed["pre_tokenizer"] = _split_digits(fixed.get("pre_tokenizer"))
    if _has_type(fixed.get("pre_tokenizer"), "ByteLevel"):
        fixed["decoder"] = dict(_BYTE_LEVEL_DECODER)
        fixed["post_processor"] = dict(_BYTE_LEVEL_POST)
    return fixed


def _token_ids(data: dict[str, Any]) -> dict[str, int]:
    ids: dict[str, int] = dict(data.get("model", {}).get("vocab", {}))
    ids.update({t["content"]: int(t["id"]) for t in data.get("added_tokens", [])})
    return ids


def _token_text(value: Any) -> str | None:
    # tokenizer_config values are either the token text or an AddedToken dict.
    if isinstance(value, dict):
        content = value.get("content")
        return content if isinstance(content, str) else None
    return value if isinstance(value, str) else None


def _leading_special_id(post_processor: Any) -> int | None:
    """The id a TemplateProcessing post-processor puts first, if it puts a special token there."""
    if not isinstance(post_processor, dict):
        return None
    if post_processor.get("type") == "Sequence":
        for child in post_processor.get("processors", []):
            found = _leading_special_id(child)
            if found is not None:
                return found
        return None
    if post_processor.get("type") != "TemplateProcessing":
        return None
    single = post_processor.get("single") or []
    first = single[0] if single else {}
    special = first.get("SpecialToken") if isinstance(first, dict) else None
    if not special:
        return None
    entry = post_processor.get("special_tokens", {}).get(special["id"], {})
    ids = entry.get("ids") or []
    return int(ids[0]) if ids else None


def _as_id_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, list):
        return [int(v) for v in value]
    return [int(value)]


def resolve_special_ids(
    tokenizer: dict[str, Any], tokenizer_config: dict[str, Any], generation_config: dict[str, Any]
) -> SpecialTokenIds:
    """eos ids (the tokenizer's first, then the generation config's), pad and BOS ids.

    Raises:
        PrepareError: no eos token can be found, so generation could never stop.
    """
    vocab = _token_ids(tokenizer)
    eos: list[int] = []
    eos_text = _token_text(tokenizer_config.get("eos_token"))
    if eos_text is not None and eos_text in vocab:
        eos.append(vocab[eos_text])
    for token_id in _as_id_list(generation_config.get("eos_token_id")):
        if token_id not in eos:
            eos.append(token_id)
    if not eos:
        raise PrepareError(
            "the tokenizer names no eos token and generation_config.json no eos_token_id; "
            "set eos_token in tokenizer_config.json of the source"
        )
    pad_text = _token_text(tokenizer_config.get("pad_token"))
    pad = vocab[pad_text] if pad_text is not None and pad_text in vocab else eos[0]
    bos = _leading_special_id(tokenizer.get("post_processor"))
    return SpecialTokenIds(eos_token_ids=tuple(eos), pad_token_id=pad, bos_token_id=bos)


def repair_tokenizer(hf_dir: Path, repair: TokenizerRepair) -> SpecialTokenIds:
    """Repair the tokenizer files of `hf_dir` in place and make the configs agree on eos/pad.

    Raises:
        PrepareError: `tokenizer.json` is missing (only fast tokenizers can be served).
    """
    tokenizer_path = hf_dir / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise PrepareError(
            f"{hf_dir} has no tokenizer.json; tokenwire serves only fast (tokenizers) tokenizers"
        )
    original = _read_json(tokenizer_path)
    tokenizer = repair_tokenizer_json(original, repair)
    if tokenizer != original:
        _write_json(tokenizer_path, tokenizer)

    config_path = hf_dir / "tokenizer_config.json"
    tokenizer_config = _read_json(config_path) if config_path.is_file() else {}
    generation_path = hf_dir / "generation_config.json"
    generation_config = _read_json(generation_path) if generation_path.is_file() else {}
    ids = resolve_special_ids(tokenizer, tokenizer_config, generation_config)

    id_to_text = {v: k for k, v in _token_ids(tokenizer).items()}
    tokenizer_config["eos_token"] = id_to_text[ids.eos_token_ids[0]]
    tokenizer_config["pad_token"] = id_to_text[ids.pad_token_id]
    tokenizer_config["model_input_names"] = list(MODEL_INPUT_NAMES)
    if repair.from_gguf:
        tokenizer_config["add_bos_token"] = False
    _write_json(config_path, tokenizer_config)

    eos_value: int | list[int] = (
        ids.eos_token_ids[0] if len(ids.eos_token_ids) == 1 else list(ids.eos_token_ids)
    )
    generation_config.update(eos_token_id=eos_value, pad_token_id=ids.pad_token_id)
    _write_json(generation_path, generation_config)
    model_config_path = hf_dir / "config.json"
    if model_config_path.is_file():
        model_config = _read_json(model_config_path)
        model_config.update(eos_token_id=eos_value, pad_token_id=ids.pad_token_id)
        _write_json(model_config_path, model_config)
    _extract_chat_template(hf_dir, tokenizer_config)
    return ids


def _extract_chat_template(hf_dir: Path, tokenizer_config: dict[str, Any]) -> None:
    # Older dirs keep the template inside tokenizer_config.json; serving reads the .jinja file.
    target = hf_dir / "chat_template.jinja"
    template = tokenizer_config.get("chat_template")
    if not target.is_file() and isinstance(template, str):
        target.write_text(template, encoding="utf-8")


def copy_assets(hf_dir: Path, out_dir: Path) -> tuple[str, ...]:
    """Copy the tokenizer, chat template and generation config beside the model.

    Overwrites what an exporter wrote there: the repaired files are the ones to serve.
    Returns the names copied.
    """
    copied = []
    for name in ASSET_FILES:
        source = hf_dir / name
        if source.is_file():
            shutil.copyfile(source, out_dir / name)
            copied.append(name)
    return tuple(copied)
