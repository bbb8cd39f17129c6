"""The Vercel AI SDK (Node) against a real tokenwire server: a streamed tool call and an object
generated under a schema, through the OpenAI Chat Completions, the default OpenAI (Responses
API) and the Anthropic providers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.frameworks.conftest import run_node


@pytest.mark.parametrize("provider", ["openai", "openai-responses", "anthropic"])
def test_stream_text_gets_the_required_tool_call(
    node_clients: Path, echo_url: str, provider: str
) -> None:
    base = f"{echo_url}/v1"
    result = run_node(node_clients, "stream-tool", provider, base, "echo")
    [call] = result["toolCalls"]  # type: ignore[misc]
    assert call["toolName"] == "get_weather"
    assert isinstance(call["input"]["city"], str)
    assert call["input"]["unit"] in ("celsius", "fahrenheit")
    assert result["finishReason"] == "tool-calls"
    parts = result["parts"]
    # Streamed, not handed over whole: the input arrived in deltas before the call.
    assert "tool-input-delta" in parts and parts.index("tool-input-start") < parts.index(
        "tool-call"
    )  # type: ignore[union-attr]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_generate_object_returns_an_object_valid_under_the_schema(
    node_clients: Path, echo_url: str, provider: str
) -> None:
    result = run_node(node_clients, "generate-object", provider, f"{echo_url}/v1", "echo")
    person = result["object"]
    assert isinstance(person, dict)
    assert isinstance(person["name"], str)
    assert isinstance(person["age"], int) and person["age"] >= 0
    assert isinstance(person["tags"], list)
