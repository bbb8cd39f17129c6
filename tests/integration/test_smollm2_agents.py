"""Agent streams end to end on the real SmolLM2-135M-Instruct (int8): the backend forces a
schema-valid call or answer, the tool-call parser the router adds turns the markup into tool
calls, and each dialect renders them for its official SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import jsonschema
import openai
import pytest
from google import genai
from google.genai import types
from pydantic import BaseModel

from tests._support.server import running_server
from tests.conftest import CloseAfter
from tokenwire import create_app
from tokenwire.backends.onnx import OnnxBackend

pytestmark = pytest.mark.slow

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
QUESTION = "What is the weather in Paris right now?"


class Capital(BaseModel):
    country: str
    capital: str
    population_millions: float


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path) -> Iterator[tuple[str, str]]:
    backend = OnnxBackend(smollm2_dir, max_batch=4)
    with running_server(create_app(backend)) as url:
        yield url, backend.model_id


def test_openai_stream_with_a_required_tool_yields_a_schema_valid_call(
    smollm2: tuple[str, str], close_after: CloseAfter
) -> None:
    url, model = smollm2
    client = close_after(openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0))
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city.",
            "parameters": WEATHER_SCHEMA,
        },
    }
    with client.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        tools=[tool],  # type: ignore[list-item]
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=80,
    ) as stream:
        kinds = [event.type for event in stream]
        completion = stream.get_final_completion()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)  # type: ignore[union-attr]
    assert kinds.count("tool_calls.function.arguments.delta") > 2, "arguments should stream"


def test_openai_parse_with_a_pydantic_response_format(
    smollm2: tuple[str, str], close_after: CloseAfter
) -> None:
    url, model = smollm2
    client = close_after(openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0))
    completion = client.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Give the capital of Japan as JSON."}],
        response_format=Capital,
        temperature=0,
        max_tokens=120,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Capital)


def test_anthropic_tool_use_block_from_the_real_model(
    smollm2: tuple[str, str], close_after: CloseAfter
) -> None:
    url, model = smollm2
    client = close_after(anthropic.Anthropic(base_url=url, api_key="x", max_retries=0))
    with client.messages.stream(
        model=model,
        max_tokens=80,
        messages=[{"role": "user", "content": QUESTION}],
        tools=[
            {
                "name": "get_weather",
                "description": "Weather in a city.",
                "input_schema": WEATHER_SCHEMA,
            }
        ],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        extra_body={"temperature": 0},
    ) as stream:
        message = stream.get_final_message()
    [block] = [b for b in message.content if b.type == "tool_use"]
    assert block.name == "get_weather"
    jsonschema.validate(block.input, WEATHER_SCHEMA)
    assert message.stop_reason == "tool_use"


def test_gemini_function_call_from_the_real_model(
    smollm2: tuple[str, str], close_after: CloseAfter
) -> None:
    url, model = smollm2
    client = close_after(genai.Client(api_key="x", http_options=types.HttpOptions(base_url=url)))
    config = types.GenerateContentConfig(
        temperature=0,
        max_output_tokens=80,
        tools=[
            types.Tool(
                function_declarations=[
                    types.FunctionDeclaration(
                        name="get_weather",
                        description="Weather in a city.",
                        parameters_json_schema=WEATHER_SCHEMA,
                    )
                ]
            )
        ],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY
            )
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    calls = []
    for chunk in client.models.generate_content_stream(
        model=model, contents=QUESTION, config=config
    ):
        calls.extend(chunk.function_calls or [])
    assert calls and calls[0].name == "get_weather"
    jsonschema.validate(calls[0].args, WEATHER_SCHEMA)
