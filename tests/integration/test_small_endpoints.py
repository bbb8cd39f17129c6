"""The small endpoints real clients call beside the stream: token counts through the official
SDKs, `GET /health`, and the prompt's size in Anthropic's `message_start`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import anyio
import httpx
import pytest
from google import genai
from google.genai import types

from tests._support.backends import ScriptedBackend
from tests._support.server import running_server
from tokenwire import BackendHost, create_app
from tokenwire.backends.echo import EchoBackend
from tokenwire.router import build_router

SYSTEM = "Answer in one short sentence."
QUESTION = "What is the capital of Japan? Say it plainly."


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    with running_server(create_app(EchoBackend())) as url:
        yield url


# Clients are closed by `with`: a pooled connection left to the garbage collector warns
# (an error under filterwarnings) in whichever test happens to be running then.
def anthropic_client(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)


def gemini_client(url: str, version: str | None = None) -> genai.Client:
    options = types.HttpOptions(base_url=url, api_version=version)
    return genai.Client(api_key="unused", http_options=options)


def test_anthropic_count_tokens_equals_the_prompt_usage_of_a_generation(echo_server: str) -> None:
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": QUESTION}]
    with anthropic_client(echo_server) as client:
        counted = client.messages.count_tokens(model="echo", system=SYSTEM, messages=messages)
        message = client.messages.create(
            model="echo", max_tokens=50, system=SYSTEM, messages=messages
        )
    assert counted.input_tokens == message.usage.input_tokens
    assert counted.input_tokens == len((SYSTEM + " " + QUESTION).split())


def test_anthropic_count_tokens_raw_answer_and_request_id(echo_server: str) -> None:
    response = httpx.post(
        f"{echo_server}/v1/messages/count_tokens",
        headers={"x-request-id": "count-1"},
        json={"model": "echo", "messages": [{"role": "user", "content": "a b c"}]},
    )
    assert response.status_code == 200
    assert response.json() == {"input_tokens": 3}
    assert response.headers["x-request-id"] == "count-1"


def test_anthropic_count_tokens_validates_as_messages_does(echo_server: str) -> None:
    with anthropic_client(echo_server) as client:
        with pytest.raises(anthropic.NotFoundError):
            client.messages.count_tokens(model="other", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(anthropic.BadRequestError, match="messages"):
            client.messages.count_tokens(model="echo", messages=[])


@pytest.mark.parametrize("version", [None, "v1beta"])
def test_gemini_count_tokens_equals_the_prompt_usage_of_a_generation(
    echo_server: str, version: str | None
) -> None:
    with gemini_client(echo_server, version) as client:
        counted = client.models.count_tokens(model="echo", contents=QUESTION)
        reply = client.models.generate_content(model="echo", contents=QUESTION)
    assert reply.usage_metadata is not None
    assert counted.total_tokens == reply.usage_metadata.prompt_token_count
    assert counted.total_tokens == len(QUESTION.split())


def test_gemini_count_tokens_reads_a_full_generate_body(echo_server: str) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "one two"}]}],
        "systemInstruction": {"parts": [{"text": "three"}]},
    }
    counted = httpx.post(f"{echo_server}/v1beta/models/models/echo:countTokens", json=body)
    assert counted.status_code == 200, counted.text
    assert counted.json()["totalTokens"] == 3
    generated = httpx.post(f"{echo_server}/v1beta/models/echo:generateContent", json=body)
    assert generated.json()["usageMetadata"]["promptTokenCount"] == 3


def test_a_backend_that_cannot_count_answers_400_in_each_dialect_shape() -> None:
    with running_server(create_app(ScriptedBackend(["x"]))) as url:
        refused = httpx.post(
            f"{url}/v1/messages/count_tokens",
            json={"model": "scripted", "messages": [{"role": "user", "content": "x"}]},
        )
        assert refused.status_code == 400
        body = refused.json()
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        assert "cannot count tokens" in body["error"]["message"]
        with (
            anthropic_client(url) as client,
            pytest.raises(anthropic.BadRequestError, match="cannot count tokens"),
        ):
            client.messages.count_tokens(
                model="scripted", messages=[{"role": "user", "content": "x"}]
            )
        with (
            gemini_client(url) as gemini,
            pytest.raises(genai.errors.ClientError, match="cannot count tokens") as raised,
        ):
            gemini.models.count_tokens(model="scripted", contents="x")
        assert raised.value.code == 400
        assert raised.value.status == "INVALID_ARGUMENT"


def test_count_tokens_needs_the_api_key_like_other_routes() -> None:
    with running_server(create_app(EchoBackend(), api_keys=["k"])) as url:
        body = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}
        refused = httpx.post(f"{url}/v1/messages/count_tokens", json=body)
        assert refused.status_code == 401
        assert refused.json()["type"] == "error"  # Anthropic's shape
        gemini = httpx.post(f"{url}/v1/models/echo:countTokens", json={"contents": "x"})
        assert gemini.status_code == 401
        assert gemini.json()["error"]["status"] == "UNAUTHENTICATED"
        accepted = httpx.post(
            f"{url}/v1/messages/count_tokens", json=body, headers={"x-api-key": "k"}
        )
        assert accepted.json() == {"input_tokens": 1}
        assert httpx.get(f"{url}/health").status_code == 200  # public, as the probes


def test_count_tokens_refuses_other_methods_in_shape(echo_server: str) -> None:
    refused = httpx.get(f"{echo_server}/v1/messages/count_tokens")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
    assert refused.json()["type"] == "error"


def test_anthropic_message_start_carries_the_prompt_tokens(echo_server: str) -> None:
    with (
        anthropic_client(echo_server) as client,
        client.messages.stream(
            model="echo",
            max_tokens=50,
            system=SYSTEM,
            messages=[{"role": "user", "content": QUESTION}],
        ) as stream,
    ):
        events = list(stream)
        final = stream.get_final_message()
    start = events[0]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == len((SYSTEM + " " + QUESTION).split())
    assert start.message.usage.input_tokens == final.usage.input_tokens
    assert start.message.usage.output_tokens == 0


def test_health_is_readiness() -> None:
    class SlowStart(ScriptedBackend):
        async def start(self) -> None:
            await anyio.sleep(0.3)

    async def main() -> None:
        host = BackendHost(SlowStart(["x"]))
        app = build_router(host)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def both() -> list[tuple[int, Any]]:
                pair = [await client.get("/health"), await client.get("/health/ready")]
                return [(r.status_code, r.json()) for r in pair]

            starting = await both()
            assert starting[0] == starting[1] == (503, {"status": "starting", "model": "scripted"})
            await host.ensure_started()
            ready = await both()
            assert ready[0] == ready[1] == (200, {"status": "ready", "model": "scripted"})
            host.drain()
            draining = await both()
            assert draining[0] == draining[1]
            assert draining[0][0] == 503
        await host.aclose()

    anyio.run(main)
