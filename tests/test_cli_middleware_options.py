"""`tokenwire serve` passes middleware options, from the config file or flags, to the
middleware itself: checked through a real server whose deadline comes from them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tokenwire.config import parse_middleware_option

SERVE = [sys.executable, "-m", "tokenwire.cli", "serve", "--backend", "echo", "--port", "0"]
# Echo waits this long before every token: a 0.3 s deadline ends the stream before its first.
SLOW = ["--backend-option", "delay=2.0", "--middleware", "cancellation"]
BODY = {"model": "echo", "prompt": "slow words here", "max_tokens": 3}


@contextmanager
def serving(*args: str) -> Iterator[str]:
    process = subprocess.Popen([*SERVE, *args], stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:
            if "Uvicorn running on" in line:
                url = line.split("running on ")[1].split()[0]
                break
        assert url is not None, "the server did not start"
        yield url
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


def refuse(*args: str) -> str:
    result = subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    return result.stderr


def test_flag_sets_the_cancellation_deadline(tmp_path: Path) -> None:
    with serving(*SLOW, "--middleware-option", "cancellation.default_timeout=0.3") as url:
        reply = httpx.post(f"{url}/v1/completions", json=BODY, timeout=10)
    assert reply.status_code == 504
    assert reply.json()["error"]["type"]  # OpenAI's error shape


def test_config_file_sets_it_and_a_flag_overrides_it(tmp_path: Path) -> None:
    config = tmp_path / "tokenwire.toml"
    config.write_text("[middleware_options.cancellation]\ndefault_timeout = 0.3\n")
    with serving(*SLOW, "--config", str(config)) as url:
        assert httpx.post(f"{url}/v1/completions", json=BODY, timeout=10).status_code == 504
    # The flag wins over the file: with 30 s the first token (after 2 s) arrives.
    fast = ["--middleware-option", "cancellation.default_timeout=30"]
    with serving(*SLOW, "--config", str(config), *fast) as url:
        reply = httpx.post(f"{url}/v1/completions", json={**BODY, "max_tokens": 1}, timeout=10)
    assert reply.status_code == 200, reply.text


def test_a_misspelt_option_fails_startup_naming_the_middleware() -> None:
    stderr = refuse(*SLOW, "--middleware-option", "cancellation.default_timout=1")
    assert "middleware 'cancellation' rejected its options" in stderr
    assert "default_timout" in stderr


def test_options_for_a_middleware_not_enabled_fail_startup() -> None:
    stderr = refuse("--middleware-option", "prompt_cache.max_bytes=1000")
    assert "prompt_cache" in stderr and "not enabled" in stderr


@pytest.mark.parametrize("text", ["cancellation", "cancellation=1", ".key=1", "name.=1"])
def test_malformed_middleware_options_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must look like"):
        parse_middleware_option(text)


def test_values_are_read_as_json() -> None:
    assert parse_middleware_option("metrics.path=/m") == ("metrics", "path", "/m")
    assert parse_middleware_option("cancellation.max-timeout=60") == (
        "cancellation",
        "max_timeout",
        60,
    )
