"""The official anthropic and google-genai SDKs, against a real server, make tool calls, send
tool results back, read thinking and ask for JSON output."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from google import genai
from google.genai import types as genai_types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._support.backends import EventScriptBackend
from tests._support.server import running_server
from tokenwire import create_app
from tokenwire.events import Event, Finish, TokenDelta, ToolCallDelta, Usage
from tokenwire.requests import ChatMessage, OutputConstraint, Tool, ToolCall, ToolChoice

MODEL = "scripted"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
CALL_EVENTS: list[Event] = [
    TokenDelta("Let me check."),
    ToolCallDelta(0, id="call_1", name="get_weather"),
    ToolCallDelta(0, arguments='{"city": "Os'),
    ToolCallDelta(0, arguments='lo", "days": 3}'),
    Finish("tool_calls", Usage(10, 8)),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
EXAMPLES = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def backend() -> EventScriptBackend:
    return EventScriptBackend(CALL_EVENTS)


@pytest.fixture(scope="module")
def url(backend: EventScriptBackend) -> Iterator[str]:
    with running_server(create_app(backend, playground=False)) as base:
        yield base


@pytest.fixture
def script(backend: EventScriptBackend) -> Iterator[EventScriptBackend]:
    """The shared backend, emptied of requests, scripted with CALL_EVENTS unless reset."""
    backend.events, backend.requests = list(CALL_EVENTS), []
    yield backend


def claude(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)


def gemini(url: str) -> genai.Client:
    return genai.Client(api_key="k", http_options=genai_types.HttpOptions(base_url=url))


def split(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather",
    "input_schema": WEATHER_SCHEMA,
}


def test_anthropic_stream_delivers_input_json_and_a_tool_use_block(
    url: str, script: EventScriptBackend
) -> None:
    with claude(url).messages.stream(
        model=MODEL,
        max_tokens=50,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    ) as stream:
        partials = [event.partial_json for event in stream if event.type == "input_json"]
        message = stream.get_final_message()
    assert partials == ['{"city": "Os', 'lo", "days": 3}']
    assert [block.type for block in message.content] == ["text", "tool_use"]
    tool_use = message.content[1]
    assert tool_use.type == "tool_use"
    assert (tool_use.id, tool_use.name, tool_use.input) == (
        "call_1",
        "get_weather",
        {"city": "Oslo", "days": 3},
    )
    assert message.stop_reason == "tool_use"
    request = script.requests[0]
    assert request.tools == (Tool("get_weather", "Weather", WEATHER_SCHEMA),)
    assert request.tool_choice == ToolChoice("auto") and request.parallel_tool_calls is False


def test_anthropic_tool_result_turn_reaches_the_backend(
    url: str, script: EventScriptBackend
) -> None:
    client = claude(url)
    first = client.messages.create(
        model=MODEL,
        max_tokens=50,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
    )
    tool_use = first.content[-1]
    assert tool_use.type == "tool_use" and tool_use.input == {"city": "Oslo", "days": 3}
    script.events = [TokenDelta("Rainy."), Finish("stop")]
    second = client.messages.create(
        model=MODEL,
        max_tokens=50,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_use.id, "content": "rain, 12C"}
                ],
            },
        ],
    )
    assert second.content[0].type == "text" and second.content[0].text == "Rainy."
    assert script.requests[1].messages == (
        ChatMessage("user", "Weather in Oslo?"),
        ChatMessage(
            "assistant",
            "Let me check.",
            tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Oslo", "days": 3}'),),
        ),
        ChatMessage("tool", "rain, 12C", tool_call_id="call_1", name="get_weather"),
    )


def test_anthropic_thinking_arrives_as_a_thinking_block(
    url: str, script: EventScriptBackend
) -> None:
    script.events = [
        TokenDelta("Hmm, ", channel="reasoning"),
        TokenDelta("easy.", channel="reasoning"),
        TokenDelta("4"),
        Finish("stop"),
    ]
    with claude(url).messages.stream(
        model=MODEL,
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "2+2?"}],
    ) as stream:
        thinking = "".join(event.thinking for event in stream if event.type == "thinking")
        message = stream.get_final_message()
    assert thinking == "Hmm, easy."
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].type == "thinking" and message.content[0].thinking == "Hmm, easy."
    assert message.content[1].type == "text" and message.content[1].text == "4"
    assert script.requests[0].reasoning is True
    # The thinking block goes back in the history as the SDK returned it.
    claude(url).messages.create(
        model=MODEL,
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": "and 3+3?"},
        ],
    )
    assert [(m.role, m.content) for m in script.requests[1].messages or ()] == [
        ("user", "2+2?"),
        ("assistant", "4"),
        ("user", "and 3+3?"),
    ]


def test_anthropic_structured_output_is_read_as_a_json_schema_constraint(
    url: str, script: EventScriptBackend
) -> None:
    from pydantic import BaseModel

    class Weather(BaseModel):
        city: str
        days: int

    script.events = [TokenDelta('{"city": "Oslo", '), TokenDelta('"days": 3}'), Finish("stop")]
    parsed = claude(url).messages.parse(
        model=MODEL,
        max_tokens=50,
        messages=[{"role": "user", "content": "Oslo, 3 days"}],
        output_format=Weather,
    )
    assert parsed.parsed_output == Weather(city="Oslo", days=3)
    constraint = script.requests[0].constraint
    assert constraint is not None and constraint.kind == "json_schema"
    assert constraint.schema is not None and set(constraint.schema["properties"]) == {
        "city",
        "days",
    }


@EXAMPLES
@given(arguments=st.dictionaries(st.text(max_size=6), json_values, max_size=4), data=st.data())
def test_anthropic_split_arguments_reassemble_through_the_sdk(
    url: str, backend: EventScriptBackend, arguments: dict[str, Any], data: st.DataObject
) -> None:
    text = json.dumps(arguments, ensure_ascii=False)
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=6))
    backend.events = [
        ToolCallDelta(0, id="t", name="f"),
        *(ToolCallDelta(0, arguments=piece) for piece in split(text, cuts)),
        Finish("tool_calls"),
    ]
    with claude(url).messages.stream(
        model=MODEL,
        max_tokens=5,
        messages=[{"role": "user", "content": "go"}],
        tools=[{"name": "f", "input_schema": {"type": "object"}}],
    ) as stream:
        message = stream.get_final_message()
    assert message.content[0].type == "tool_use" and message.content[0].input == arguments


GEMINI_TOOLS: list[Any] = [
    genai_types.Tool(
        function_declarations=[
            genai_types.FunctionDeclaration(
                name="get_weather",
                description="Weather",
                parameters=genai_types.Schema(
                    type=genai_types.Type.OBJECT,
                    properties={
                        "city": genai_types.Schema(type=genai_types.Type.STRING),
                        "days": genai_types.Schema(type=genai_types.Type.INTEGER),
                    },
                    required=["city"],
                ),
            )
        ]
    )
]
NO_AFC = genai_types.AutomaticFunctionCallingConfig(disable=True)


@pytest.mark.parametrize("streamed", [True, False])
def test_gemini_function_calls_arrive_whole_streamed_and_not(
    url: str, script: EventScriptBackend, streamed: bool
) -> None:
    client = gemini(url)
    config = genai_types.GenerateContentConfig(
        tools=GEMINI_TOOLS,
        automatic_function_calling=NO_AFC,
        tool_config=genai_types.ToolConfig(
            function_calling_config=genai_types.FunctionCallingConfig(
                mode=genai_types.FunctionCallingConfigMode.ANY,
                allowed_function_names=["get_weather"],
            )
        ),
    )
    if streamed:
        chunks = list(
            client.models.generate_content_stream(model=MODEL, contents="Oslo?", config=config)
        )
        calls = [call for chunk in chunks for call in chunk.function_calls or []]
        assert "".join(chunk.text or "" for chunk in chunks) == "Let me check."
    else:
        response = client.models.generate_content(model=MODEL, contents="Oslo?", config=config)
        calls = response.function_calls or []
        assert response.text == "Let me check."
    assert [(c.id, c.name, c.args) for c in calls] == [
        ("call_1", "get_weather", {"city": "Oslo", "days": 3})
    ]
    request = script.requests[0]
    assert request.tools == (Tool("get_weather", "Weather", WEATHER_SCHEMA),)
    assert request.tool_choice == ToolChoice("required", ("get_weather",))


def test_gemini_function_response_turn_reaches_the_backend(
    url: str, script: EventScriptBackend
) -> None:
    client = gemini(url)
    config = genai_types.GenerateContentConfig(
        tools=GEMINI_TOOLS, automatic_function_calling=NO_AFC
    )
    first = client.models.generate_content(model=MODEL, contents="Oslo?", config=config)
    assert first.candidates is not None and first.candidates[0].content is not None
    script.events = [TokenDelta("Rainy."), Finish("stop")]
    second = client.models.generate_content(
        model=MODEL,
        config=config,
        contents=[
            genai_types.Content(role="user", parts=[genai_types.Part(text="Oslo?")]),
            first.candidates[0].content,
            genai_types.Content(
                role="user",
                parts=[
                    genai_types.Part.from_function_response(
                        name="get_weather", response={"sky": "rain"}
                    )
                ],
            ),
        ],
    )
    assert second.text == "Rainy."
    assert script.requests[1].messages == (
        ChatMessage("user", "Oslo?"),
        ChatMessage(
            "assistant",
            "Let me check.",
            tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Oslo", "days": 3}'),),
        ),
        ChatMessage("tool", '{"sky": "rain"}', tool_call_id="call_1", name="get_weather"),
    )


def test_gemini_response_schema_is_read_as_a_json_schema_constraint(
    url: str, script: EventScriptBackend
) -> None:
    script.events = [TokenDelta('{"city": "Oslo"}'), Finish("stop")]
    client = gemini(url)  # held: a dropped client closes its connection pool
    response = client.models.generate_content(
        model=MODEL,
        contents="Oslo",
        config=genai_types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema=genai_types.Schema(
                type=genai_types.Type.OBJECT,
                properties={
                    "city": genai_types.Schema(type=genai_types.Type.STRING, nullable=True)
                },
            ),
        ),
    )
    assert response.text == '{"city": "Oslo"}'
    assert script.requests[0].constraint == OutputConstraint(
        "json_schema",
        {"type": "object", "properties": {"city": {"type": ["string", "null"]}}},
    )


@EXAMPLES
@given(arguments=st.dictionaries(st.text(max_size=6), json_values, max_size=4), data=st.data())
def test_gemini_split_arguments_reassemble_through_the_sdk(
    url: str, backend: EventScriptBackend, arguments: dict[str, Any], data: st.DataObject
) -> None:
    text = json.dumps(arguments, ensure_ascii=False)
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=6))
    backend.events = [
        ToolCallDelta(0, id="t", name="f"),
        *(ToolCallDelta(0, arguments=piece) for piece in split(text, cuts)),
        Finish("tool_calls"),
    ]
    config = genai_types.GenerateContentConfig(
        tools=[genai_types.Tool(function_declarations=[genai_types.FunctionDeclaration(name="f")])],
        automatic_function_calling=NO_AFC,
    )
    client = gemini(url)  # held: a dropped client closes its connection pool
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="go", config=config))
    calls = [call for chunk in chunks for call in chunk.function_calls or []]
    assert [(c.name, c.args) for c in calls] == [("f", arguments)]
