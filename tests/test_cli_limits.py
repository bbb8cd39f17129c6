"""`tokenwire serve`'s request limits: the default max_tokens cap and how to change it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenwire.cli import load_config, make_parser
from tokenwire.limits import DEFAULT_MAX_TOKENS, Limits


def limits(*argv: str) -> Limits:
    return load_config(make_parser().parse_args(["serve", *argv])).limits()


def test_serve_caps_max_tokens_by_default() -> None:
    assert DEFAULT_MAX_TOKENS == 4096
    assert limits().max_tokens == DEFAULT_MAX_TOKENS
    assert Limits().max_tokens is None  # embedding create_app stays uncapped


def test_the_flag_and_the_config_file_change_the_cap_and_zero_removes_it(tmp_path: Path) -> None:
    config = tmp_path / "tokenwire.toml"
    config.write_text("max_tokens = 0\n")
    assert limits("--max-tokens", "256").max_tokens == 256
    assert limits("--config", str(config)).max_tokens is None
    assert limits("--config", str(config), "--max-tokens", "100").max_tokens == 100


def test_a_negative_cap_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        limits("--max-tokens", "-5")
