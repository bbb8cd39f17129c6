"""Every example runs as documented."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests._support.server import running_server
from tokenwire import create_app
from tokenwire.plugins import list_plugins, load_plugin

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_mount_in_fastapi_serves_the_app_and_the_mounted_llm() -> None:
    from examples.mount_in_fastapi import app

    with running_server(app) as url:
        assert httpx.get(f"{url}/").json()["service"] == "my product"
        body = {
            "model": "echo",
            "stream": True,
            "messages": [{"role": "user", "content": "mounted ok"}],
        }
        client = openai.OpenAI(base_url=f"{url}/llm/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.create(**body)  # type: ignore[call-overload]
        assert (
            "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "mounted ok"
        )
        assert httpx.get(f"{url}/llm/health/ready").status_code == 200


def test_custom_backend_installs_through_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `pip install` of a package declaring the entry point leaves on sys.path.
    dist_info = tmp_path / "reverse_backend-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: reverse-backend\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[tokenwire.backends]\nreverse = custom_backend:ReverseBackend\n"
    )
    (tmp_path / "custom_backend.py").write_text((EXAMPLES / "custom_backend.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))

    assert list_plugins("backends")["reverse"] == "custom_backend:ReverseBackend"
    backend = load_plugin("backends", "reverse")()  # type: ignore[operator]
    with running_server(create_app(backend)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.create(
            model="reverse", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            == "three two one"
        )
    assert len((EXAMPLES / "custom_backend.py").read_text().splitlines()) < 60
    sys.modules.pop("custom_backend", None)


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "examples/clients/openai_stream.py"],
        [sys.executable, "examples/clients/anthropic_stream.py"],
        ["sh", "examples/clients/curl.sh"],
        ["node", "examples/clients/fetch_stream.mjs"],
    ],
)
def test_client_snippets_stream_from_a_server(command: list[str], echo_url: str) -> None:
    env = {**os.environ, "TOKENWIRE_URL": echo_url, "TOKENWIRE_MODEL": "echo"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # The echo backend sends the question back, so its words prove the stream arrived.
    assert "capital" in result.stdout


def test_custom_middleware_masks_a_word_even_split_across_deltas() -> None:
    from functools import partial

    from examples.custom_middleware import RedactMiddleware

    from tokenwire.backends.echo import EchoBackend

    app = create_app(EchoBackend(), middlewares=[partial(RedactMiddleware, word="Paris")])
    with running_server(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.create(
            model="echo",
            stream=True,
            messages=[{"role": "user", "content": "The capital is Paris, and Par is not Paris."}],
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "The capital is █████, and Par is not █████."
    assert len((EXAMPLES / "custom_middleware.py").read_text().splitlines()) < 40


@pytest.mark.anyio
async def test_custom_middleware_catches_a_word_split_between_tokens() -> None:
    from examples.custom_middleware import RedactMiddleware

    from tests._support.backends import ScriptedBackend
    from tokenwire import GenerationRequest, TokenDelta

    backend = ScriptedBackend(["in Pa", "ri", "s we", " trust Pa"])
    middleware = RedactMiddleware(backend.generate, word="Paris")
    request = GenerationRequest(model="scripted", prompt="x")
    texts = [e.text async for e in middleware(request) if isinstance(e, TokenDelta)]
    assert "".join(texts) == "in █████ we trust Pa"
