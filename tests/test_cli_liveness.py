"""`tokenwire serve`'s early-headers delay and keep-alive interval: flags, config file, checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenwire.cli import load_config, make_parser
from tokenwire.config import ServeConfig


def config(*argv: str) -> ServeConfig:
    return load_config(make_parser().parse_args(["serve", *argv]))


def test_early_headers_default_to_one_second_and_the_flag_changes_or_disables_them() -> None:
    assert config().early_headers_delay() == 1.0
    assert config("--early-headers-after", "0").early_headers_delay() == 0.0
    assert config("--early-headers-after", "2.5").early_headers_delay() == 2.5
    assert config("--early-headers-after", "off").early_headers_delay() is None


def test_the_config_file_disables_early_headers_with_inf(tmp_path: Path) -> None:
    path = tmp_path / "tokenwire.toml"
    path.write_text("early_headers_after = inf\nkeepalive_seconds = 0.5\n")
    loaded = config("--config", str(path))
    assert loaded.early_headers_delay() is None
    assert loaded.keepalive_seconds == 0.5
    assert config("--config", str(path), "--keepalive", "3").keepalive_seconds == 3


@pytest.mark.parametrize("argv", [["--early-headers-after", "-1"], ["--keepalive", "0"]])
def test_bad_values_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        config(*argv)
    assert "seconds" in capsys.readouterr().err


def test_a_negative_delay_in_the_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "tokenwire.toml"
    path.write_text("early_headers_after = -1\n")
    with pytest.raises(ValueError, match="early_headers_after must be >= 0"):
        config("--config", str(path))
