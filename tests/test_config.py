from dataclasses import fields, replace
from pathlib import Path

from tokenwire.cli import load_config, make_parser
from tokenwire.config import ServeConfig
from tokenwire.limits import Limits


def test_every_limit_is_a_config_key_defaulting_to_the_limits_default() -> None:
    keys = {f.name for f in fields(ServeConfig)}
    assert {f.name for f in fields(Limits)} <= keys
    # All but max_tokens: serving caps it by default (see test_cli_limits.py).
    assert replace(ServeConfig().limits(), max_tokens=None) == Limits()


def test_limits_come_from_the_config_file_then_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "tokenwire.toml"
    path.write_text(
        "max_body_bytes = 2048\nmax_tokens = 64\nmax_concurrent_per_key = 3\n"
        'send_buffer_bytes = 4096\nslow_client_policy = "disconnect"\n'
        "send_timeout_seconds = 9.5\n"
    )
    args = make_parser().parse_args(
        ["serve", "--config", str(path), "--max-tokens", "32", "--send-timeout", "2"]
    )
    assert load_config(args).limits() == Limits(
        max_body_bytes=2048,
        max_tokens=32,
        max_concurrent_per_key=3,
        send_buffer_bytes=4096,
        slow_client_policy="disconnect",
        send_timeout_seconds=2.0,
    )
