import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from tests._support.asgi import call_http
from tests._support.backends import ScriptedBackend
from tests._support.server import running_server
from tokenwire import TokenwireMiddleware, create_app
from tokenwire.backends.echo import EchoBackend

CHAT = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "x"}]}


class SlowStartBackend(ScriptedBackend):
    def __init__(self, start_seconds: float, fail: bool = False) -> None:
        super().__init__(["ok"])
        self.start_seconds, self.fail = start_seconds, fail

    async def start(self) -> None:
        await anyio.sleep(self.start_seconds)
        if self.fail:
            raise RuntimeError("weights missing")


def test_readiness_is_503_until_the_backend_has_started() -> None:
    app = Starlette(routes=[Mount("/llm", create_app(SlowStartBackend(0.5)))])
    with running_server(app) as url:
        first = httpx.get(f"{url}/llm/health/ready")
        assert first.status_code == 503
        deadline = time.monotonic() + 5
        while httpx.get(f"{url}/llm/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.get(f"{url}/llm/health/live").status_code == 200


@pytest.mark.anyio
async def test_a_backend_that_fails_to_start_gets_503_in_dialect_shape() -> None:
    app = create_app(SlowStartBackend(0, fail=True))  # mounted-style: no lifespan ran
    rec = await call_http(app, "/v1/chat/completions", CHAT)
    assert rec.status == 503
    assert rec.json()["error"]["type"]


def test_lifespan_starts_the_backend_before_serving() -> None:
    backend = SlowStartBackend(0.2)
    with running_server(create_app(backend)) as url:
        assert httpx.get(f"{url}/health/ready").status_code == 200


def test_asgi_middleware_form_answers_only_tokenwire_routes() -> None:
    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("host app")

    host = Starlette(routes=[Route("/", home), Route("/v1/other", home)])
    app = TokenwireMiddleware(host, backend=EchoBackend())
    with running_server(app) as url:
        assert httpx.get(f"{url}/").text == "host app"
        assert httpx.get(f"{url}/v1/other").text == "host app"
        assert httpx.get(f"{url}/nowhere").status_code == 404
        body = {"model": "echo", "messages": [{"role": "user", "content": "via middleware"}]}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body).json()
        assert reply["choices"][0]["message"]["content"] == "via middleware"


def test_cli_serve_runs_a_real_server(tmp_path: Path) -> None:
    config = tmp_path / "tokenwire.toml"
    config.write_text('backend = "echo"\nport = 0\n[backend_options]\ndelay = 0.0\n')
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokenwire.cli",
            "serve",
            "--config",
            str(config),
            "--log-level",
            "info",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        assert process.stderr is not None
        for line in process.stderr:
            if "Uvicorn running on" in line:
                url = line.split("running on ")[1].split()[0]
                break
        assert url is not None
        reply = httpx.post(
            f"{url}/v1/completions", json={"model": "echo", "prompt": "cli works"}
        ).json()
        assert reply["choices"][0]["text"] == "cli works"
    finally:
        process.terminate()
        process.wait(10)
        process.stderr.close()  # type: ignore[union-attr]


def test_cli_rejects_unknown_backend_with_the_known_names() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tokenwire.cli", "serve", "--backend", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "known backends" in result.stderr and "echo" in result.stderr


def test_cli_plugins_lists_builtins() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tokenwire.cli", "plugins"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "echo" in result.stdout and "websocket" in result.stdout and "anthropic" in result.stdout
