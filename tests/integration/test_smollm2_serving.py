"""End to end on the real SmolLM2-135M-Instruct (int8), through the official SDKs."""

import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from tests._support.server import running_server
from tokenwire import create_app
from tokenwire.backends.onnx import OnnxBackend


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path) -> Iterator[tuple[str, OnnxBackend]]:
    backend = OnnxBackend(smollm2_dir, max_batch=4)
    with running_server(create_app(backend)) as url:
        yield url, backend


def test_openai_sdk_streams_paris(smollm2: tuple[str, OnnxBackend]) -> None:
    url, backend = smollm2
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model=backend.model_id,
        stream=True,
        max_tokens=32,
        temperature=0,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Name the capital city of France."}],
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    # Several deltas, not one block: it streamed.
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 5


def test_anthropic_sdk_streams_tokyo(smollm2: tuple[str, OnnxBackend]) -> None:
    url, backend = smollm2
    client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    with client.messages.stream(
        model=backend.model_id,
        max_tokens=32,
        extra_body={"temperature": 0},  # this SDK version no longer has the parameter
        system="You are a helpful assistant.",
        messages=[{"role": "user", "content": "What is the capital of Japan?"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "Tokyo" in text
    assert final.stop_reason in ("end_turn", "max_tokens")


def test_gemini_sdk_answers(smollm2: tuple[str, OnnxBackend]) -> None:
    url, backend = smollm2
    client = genai.Client(api_key="x", http_options=types.HttpOptions(base_url=url))
    reply = client.models.generate_content(
        model=backend.model_id,
        contents="Name the capital city of France.",
        config=types.GenerateContentConfig(temperature=0, max_output_tokens=32),
    )
    assert "Paris" in (reply.text or "")


def test_prompt_longer_than_the_context_is_400_with_counts(
    smollm2: tuple[str, OnnxBackend],
) -> None:
    url, backend = smollm2
    body = {"model": backend.model_id, "messages": [{"role": "user", "content": "word " * 9000}]}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == 400
    assert any(ch.isdigit() for ch in reply.json()["error"]["message"])


def test_client_disconnect_frees_the_slot(smollm2: tuple[str, OnnxBackend]) -> None:
    url, backend = smollm2
    body = {
        "model": backend.model_id,
        "stream": True,
        "max_tokens": 1500,
        "temperature": 0,
        "messages": [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}],
    }
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        for _ in range(20):
            next(lines)
        assert backend.stats.running + backend.stats.prefilling == 1
    deadline = time.monotonic() + 2
    while backend.stats.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.stats.running == 0


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.mark.parametrize("tools", [[], [WEATHER_TOOL]], ids=["plain", "tools"])
def test_anthropic_count_tokens_is_exactly_the_prefill(
    smollm2: tuple[str, OnnxBackend],
    tools: list[dict[str, object]],
    request: pytest.FixtureRequest,
) -> None:
    url, backend = smollm2
    client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    request.addfinalizer(client.close)
    asked: dict[str, object] = {
        "model": backend.model_id,
        "system": "You are a helpful assistant.",
        "messages": [{"role": "user", "content": "What is the weather in Tokyo? 東京 👋"}],
    }
    if tools:
        asked["tools"] = tools
    counted = client.messages.count_tokens(**asked)  # type: ignore[arg-type]
    with client.messages.stream(max_tokens=4, **asked) as stream:  # type: ignore[arg-type]
        events = list(stream)
        final = stream.get_final_message()
    # Anthropic's input_tokens leaves out cache reads; a count is the whole prompt.
    cached = final.usage.cache_read_input_tokens or 0
    assert counted.input_tokens == final.usage.input_tokens + cached > 20
    start = events[0]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == final.usage.input_tokens
    assert (start.message.usage.cache_read_input_tokens or 0) == cached
    if tools:  # the tool prompt is counted, as it is prefilled
        plain = client.messages.count_tokens(
            model=backend.model_id,
            system=asked["system"],
            messages=asked["messages"],  # type: ignore[arg-type]
        )
        assert counted.input_tokens > plain.input_tokens + 50


def test_gemini_count_tokens_is_exactly_the_prefill(
    smollm2: tuple[str, OnnxBackend], request: pytest.FixtureRequest
) -> None:
    url, backend = smollm2
    client = genai.Client(api_key="x", http_options=types.HttpOptions(base_url=url))
    request.addfinalizer(client.close)
    contents = "Name the capital city of France."
    counted = client.models.count_tokens(model=backend.model_id, contents=contents)
    reply = client.models.generate_content(
        model=backend.model_id,
        contents=contents,
        config=types.GenerateContentConfig(max_output_tokens=4),
    )
    assert reply.usage_metadata is not None
    assert counted.total_tokens == reply.usage_metadata.prompt_token_count > 5
