"""API keys, per-key concurrency, CORS and limits, against the ASGI app and a real server."""

import json

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests._support.backends import ScriptedBackend
from tests._support.server import running_server
from tokenwire import create_app
from tokenwire.auth import ApiKeys
from tokenwire.backends.echo import EchoBackend
from tokenwire.limits import Limits

KEY = "sk-test-123"
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture(scope="module")
def secured_url():  # type: ignore[no-untyped-def]
    with running_server(create_app(EchoBackend(), api_keys=[KEY, "second-key"])) as url:
        yield url


def test_missing_or_wrong_key_is_401_in_each_dialect_shape(secured_url: str) -> None:
    openai_reply = httpx.post(f"{secured_url}/v1/chat/completions", json=CHAT)
    assert openai_reply.status_code == 401
    assert openai_reply.json()["error"]["type"] == "authentication_error"
    anthropic_reply = httpx.post(
        f"{secured_url}/v1/messages", json={**CHAT, "max_tokens": 5}, headers={"x-api-key": "wrong"}
    )
    assert anthropic_reply.status_code == 401
    assert anthropic_reply.json()["error"]["type"] == "authentication_error"
    gemini_reply = httpx.post(f"{secured_url}/v1beta/models/echo:generateContent", json={})
    assert gemini_reply.status_code == 401
    assert gemini_reply.json()["error"]["status"] == "UNAUTHENTICATED"
    assert httpx.get(f"{secured_url}/v1/models").status_code == 401


def test_health_endpoints_stay_open(secured_url: str) -> None:
    assert httpx.get(f"{secured_url}/health/live").status_code == 200
    assert httpx.get(f"{secured_url}/health/ready").status_code == 200


def test_every_sdk_authenticates_its_own_way(secured_url: str) -> None:
    chat = openai.OpenAI(base_url=f"{secured_url}/v1", api_key=KEY, max_retries=0)
    reply = chat.chat.completions.create(model="echo", messages=[{"role": "user", "content": "ok"}])
    assert reply.choices[0].message.content == "ok"  # Authorization: Bearer
    claude = anthropic.Anthropic(base_url=secured_url, api_key="second-key", max_retries=0)
    message = claude.messages.create(
        model="echo", max_tokens=5, messages=[{"role": "user", "content": "ok"}]
    )
    assert message.content[0].text == "ok"  # type: ignore[union-attr]  # x-api-key
    gemini = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=secured_url))
    assert (
        gemini.models.generate_content(model="echo", contents="ok").text == "ok"
    )  # x-goog-api-key
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{secured_url}/v1", api_key="nope", max_retries=0).models.list()


def test_websocket_takes_the_key_as_a_query_parameter(secured_url: str) -> None:
    ws_url = secured_url.replace("http://", "ws://") + "/v1/chat/completions"
    with pytest.raises(InvalidStatus):
        connect(ws_url).close()
    with connect(f"{ws_url}?api_key={KEY}") as ws:
        ws.send(json.dumps({**CHAT, "stream": True}))
        frames = [ws.recv() for _ in range(3)]
        assert json.loads(frames[0])["choices"][0]["delta"]["role"] == "assistant"


def test_keys_are_compared_whole() -> None:
    keys = ApiKeys(["abc"])
    scope = {"type": "http", "headers": [(b"authorization", b"Bearer ab")], "query_string": b""}
    with pytest.raises(Exception, match="valid API key"):
        keys.authenticate(scope)
    scope["headers"] = [(b"authorization", b"bearer abc")]
    assert keys.authenticate(scope) == "abc"


def test_per_key_concurrency_cap_is_429_with_retry_after() -> None:
    backend = ScriptedBackend([f" w{i}" for i in range(100)], delay=0.02)
    app = create_app(backend, api_keys=[KEY], limits=Limits(max_concurrent_per_key=1))
    headers = {"authorization": f"Bearer {KEY}"}
    body = {**CHAT, "model": "scripted", "stream": True}
    with (
        running_server(app) as url,
        httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as first,
    ):
        lines = first.iter_lines()  # keep it: a dropped iterator closes the response
        next(lines)
        second = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers)
        assert second.status_code == 429
        assert second.headers["retry-after"] == "1"
        assert second.json()["error"]["type"] == "rate_limit_error"


def test_max_tokens_cap_is_400_with_the_numbers_and_the_default_budget() -> None:
    app = create_app(EchoBackend(), limits=Limits(max_tokens=3))
    with running_server(app) as url:
        too_many = httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "max_tokens": 10})
        assert too_many.status_code == 400
        assert (
            "10" in too_many.json()["error"]["message"]
            and "3" in too_many.json()["error"]["message"]
        )
        long = {**CHAT, "messages": [{"role": "user", "content": "a b c d e f"}]}
        reply = httpx.post(f"{url}/v1/chat/completions", json=long).json()
        assert reply["choices"][0]["message"]["content"] == "a b c"
        assert reply["choices"][0]["finish_reason"] == "length"


def test_cors_is_off_by_default_and_configurable() -> None:
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    with running_server(create_app(EchoBackend())) as url:
        reply = httpx.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={"origin": "https://app.example"}
        )
        assert "access-control-allow-origin" not in reply.headers
    with running_server(create_app(EchoBackend(), cors_origins=["https://app.example"])) as url:
        options = httpx.options(f"{url}/v1/chat/completions", headers=preflight)
        assert options.headers["access-control-allow-origin"] == "https://app.example"
        reply = httpx.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={"origin": "https://app.example"}
        )
        assert reply.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in reply.headers["access-control-expose-headers"]


def test_a_mounted_app_keeps_its_public_paths_open_and_the_rest_gated() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/llm", create_app(EchoBackend(), api_keys=[KEY]))])
    with running_server(outer) as url:
        assert httpx.get(f"{url}/llm/health/live").status_code == 200
        assert httpx.post(f"{url}/llm/v1/chat/completions", json=CHAT).status_code == 401
        authorized = {"authorization": f"Bearer {KEY}"}
        response = httpx.post(f"{url}/llm/v1/chat/completions", json=CHAT, headers=authorized)
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/health/live", "", "/health/live"),
        ("/llm/health/live", "/llm", "/health/live"),
        ("/llm", "/llm", ""),
        ("/llmx/health/live", "/llm", "/llmx/health/live"),
        ("/other/health/live", "/llm", "/other/health/live"),
    ],
)
def test_route_path_strips_the_mount_point_on_a_segment_boundary_only(
    path: str, root_path: str, expected: str
) -> None:
    from tokenwire._auth_gate import route_path

    # Starlette's rule (`starlette._utils.get_route_path`), which its routes match by.
    assert route_path({"type": "http", "path": path, "root_path": root_path}) == expected
