"""GeminiDialect for agents: function declarations, toolConfig, functionCall/functionResponse
history, JSON output and thinking, and the whole-call parts it streams and returns."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.genai import types as genai_types

from tokenwire.completion import Completion
from tokenwire.dialects import GeminiDialect
from tokenwire.errors import GenerationError, InvalidRequestError
from tokenwire.events import Event, Finish, TokenDelta, ToolCallDelta, Usage
from tokenwire.requests import ChatMessage, OutputConstraint, Tool, ToolCall, ToolChoice

MODEL = "tw-model"
DIALECT = GeminiDialect()
WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING", "description": "the city"},
            "days": {"type": "INTEGER", "nullable": True},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}},
        },
        "required": ["city"],
        "propertyOrdering": ["city", "days"],
    },
}
WEATHER_JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "the city"},
        "days": {"type": ["integer", "null"]},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
    },
    "required": ["city"],
}


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "SECRET"}]}]}
    base.update(fields)
    return base


def parse(document: dict[str, Any], target: str = f"{MODEL}:streamGenerateContent") -> Any:
    return DIALECT.parse(document, {"target": target}, "req_abc123", MODEL)


def run(events: list[Event], **fields: Any) -> list[genai_types.GenerateContentResponse]:
    exchange = parse(body(**fields))
    payloads = [*exchange.open()]
    for event in events:
        payloads.extend(exchange.render(event))
    return [
        genai_types.GenerateContentResponse._from_response(response=json.loads(p.data), kwargs={})
        for p in payloads
    ]


def test_parse_reads_declarations_tool_config_json_schema_and_thinking() -> None:
    request = parse(
        body(
            tools=[
                {"functionDeclarations": [WEATHER]},
                {
                    "function_declarations": [
                        {"name": "b", "parametersJsonSchema": {"type": "object"}},
                        {"name": "c"},
                    ]
                },
            ],
            toolConfig={
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["b", "c"]}
            },
            generationConfig={
                "responseMimeType": "application/json",
                "responseSchema": {"type": "ARRAY", "items": {"type": "NUMBER"}},
                "thinkingConfig": {"thinkingBudget": 512, "includeThoughts": True},
            },
        )
    ).request
    assert request.tools == (
        Tool("get_weather", "Weather in a city", WEATHER_JSON_SCHEMA),
        Tool("b", "", {"type": "object"}),
        Tool("c", "", {"type": "object", "properties": {}}),
    )
    assert request.tool_choice == ToolChoice("required", ("b", "c"))
    assert request.constraint == OutputConstraint(
        "json_schema", {"type": "array", "items": {"type": "number"}}
    )
    assert request.reasoning is True


@pytest.mark.parametrize(
    ("config", "constraint"),
    [
        ({}, None),
        ({"responseMimeType": "text/plain"}, None),
        ({"responseMimeType": "application/json"}, OutputConstraint("json_object")),
        (
            {"response_mime_type": "application/json", "responseJsonSchema": {"type": "object"}},
            OutputConstraint("json_schema", {"type": "object"}),
        ),
    ],
)
def test_response_mime_type_and_schemas_map_to_the_constraint(
    config: dict[str, Any], constraint: OutputConstraint | None
) -> None:
    assert parse(body(generationConfig=config)).request.constraint == constraint


@pytest.mark.parametrize(
    ("mode", "choice"),
    [
        ("AUTO", ToolChoice("auto")),
        ("VALIDATED", ToolChoice("auto")),
        ("NONE", ToolChoice("none")),
        ("ANY", ToolChoice("required")),
    ],
)
def test_function_calling_modes_map_to_tool_choice(mode: str, choice: ToolChoice) -> None:
    config = {"functionCallingConfig": {"mode": mode}}
    assert parse(body(toolConfig=config)).request.tool_choice == choice


@pytest.mark.parametrize(
    ("thinking", "reasoning"),
    [
        ({"thinkingBudget": 0}, False),
        ({"thinkingBudget": -1}, None),
        ({"includeThoughts": True}, None),
    ],
)
def test_thinking_budget_maps_to_reasoning(
    thinking: dict[str, Any], reasoning: bool | None
) -> None:
    request = parse(body(generationConfig={"thinkingConfig": thinking})).request
    assert request.reasoning is reasoning


def test_function_calls_and_responses_become_tool_turns_with_matching_ids() -> None:
    request = parse(
        body(
            contents=[
                {"role": "user", "parts": [{"text": "weather?"}]},
                {
                    "role": "model",
                    "parts": [
                        {"text": "thinking aloud", "thought": True},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                        {"functionCall": {"name": "get_time", "id": "fc-9"}},
                        {"function_call": {"name": "get_weather", "args": {"city": "Rome"}}},
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {
                            "functionResponse": {
                                "name": "get_time",
                                "id": "fc-9",
                                "response": {"t": 1},
                            }
                        },
                        {"functionResponse": {"name": "get_weather", "response": {"sky": "rain"}}},
                        {"functionResponse": {"name": "get_weather", "response": {"sky": "sun"}}},
                        {"text": "so?"},
                    ],
                },
            ]
        )
    ).request
    assert request.messages == (
        ChatMessage("user", "weather?"),
        ChatMessage(
            "assistant",
            "",
            tool_calls=(
                ToolCall("call_1_1", "get_weather", '{"city": "Oslo"}'),
                ToolCall("fc-9", "get_time", "{}"),
                ToolCall("call_1_3", "get_weather", '{"city": "Rome"}'),
            ),
        ),
        ChatMessage("tool", '{"t": 1}', tool_call_id="fc-9", name="get_time"),
        ChatMessage("tool", '{"sky": "rain"}', tool_call_id="call_1_1", name="get_weather"),
        ChatMessage("tool", '{"sky": "sun"}', tool_call_id="call_1_3", name="get_weather"),
        ChatMessage("user", "so?"),
    )


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": {}}, "tools"),
        ({"tools": [{"googleSearch": {}}]}, "tools[0].googleSearch"),
        ({"tools": [{"codeExecution": {}}]}, "tools[0].codeExecution"),
        (
            {"tools": [{"functionDeclarations": [{"name": "1x"}]}]},
            "tools[0].functionDeclarations[0].name",
        ),
        (
            {"tools": [{"functionDeclarations": [{"name": "f\n"}]}]},
            "tools[0].functionDeclarations[0].name",
        ),
        (
            {"tools": [{"functionDeclarations": [{"description": "x"}]}]},
            "tools[0].functionDeclarations[0].name",
        ),
        (
            {
                "tools": [
                    {"functionDeclarations": [{"name": "a", "parameters": {"type": "Object"}}]}
                ]
            },
            "tools[0].functionDeclarations[0].parameters.type",
        ),
        (
            {
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "a",
                                "parameters": {"type": "OBJECT"},
                                "parametersJsonSchema": {},
                            }
                        ]
                    }
                ]
            },
            "tools[0].functionDeclarations[0].parametersJsonSchema",
        ),
        (
            {"toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
            "toolConfig.functionCallingConfig.mode",
        ),
        (
            {"toolConfig": {"functionCallingConfig": {"mode": []}}},
            "toolConfig.functionCallingConfig.mode",
        ),
        (
            {
                "toolConfig": {
                    "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["nope"]}
                }
            },
            "toolConfig.functionCallingConfig.allowedFunctionNames[0]",
        ),
        (
            {"generationConfig": {"responseMimeType": "text/x.enum"}},
            "generationConfig.responseMimeType",
        ),
        (
            {"generationConfig": {"responseSchema": {"type": "OBJECT"}}},
            "generationConfig.responseMimeType",
        ),
        (
            {"generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": 1}},
            "generationConfig.responseJsonSchema",
        ),
        (
            {"generationConfig": {"thinkingConfig": {"thinkingBudget": -2}}},
            "generationConfig.thinkingConfig.thinkingBudget",
        ),
        ({"contents": [{"role": "user", "parts": [{"inlineData": {}}]}]}, "contents[0].parts[0]"),
        (
            {"contents": [{"role": "user", "parts": [{"functionCall": {"name": "f"}}]}]},
            "contents[0].parts[0].functionCall",
        ),
        (
            {"contents": [{"role": "model", "parts": [{"functionResponse": {"name": "f"}}]}]},
            "contents[0].parts[0].functionResponse",
        ),
        (
            {
                "contents": [
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": []}}]}
                ]
            },
            "contents[0].parts[0].functionCall.args",
        ),
        (
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [{"functionResponse": {"name": "f", "response": "x"}}],
                    }
                ]
            },
            "contents[0].parts[0].functionResponse.response",
        ),
    ],
)
def test_bad_agent_fields_are_refused_with_400_naming_the_field(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse(body(**fields))
    assert caught.value.param == param
    assert param in caught.value.message and "SECRET" not in caught.value.message


def test_a_schema_nested_too_deeply_is_refused() -> None:
    schema: dict[str, Any] = {"type": "STRING"}
    for _ in range(40):
        schema = {"type": "ARRAY", "items": schema}
    with pytest.raises(InvalidRequestError):
        parse(body(tools=[{"functionDeclarations": [{"name": "f", "parameters": schema}]}]))


def test_stream_sends_each_call_whole_when_it_is_complete() -> None:
    chunks = run(
        [
            TokenDelta("hidden", channel="reasoning"),
            TokenDelta("Checking."),
            ToolCallDelta(0, id="c1", name="get_weather"),
            ToolCallDelta(0, arguments='{"city":'),
            ToolCallDelta(0, arguments=' "Oslo"}'),
            ToolCallDelta(1, id="c2", name="get_time"),
            Finish("tool_calls", Usage(4, 6)),
        ]
    )
    assert [chunk.text for chunk in chunks[:1]] == ["Checking."]
    calls = [chunk.function_calls for chunk in chunks[1:]]
    assert [[(c.id, c.name, c.args) for c in group or []] for group in calls] == [
        [("c1", "get_weather", {"city": "Oslo"})],
        [("c2", "get_time", {})],
    ]
    last = chunks[-1].candidates
    assert last is not None and last[0].finish_reason == genai_types.FinishReason.STOP
    assert chunks[-1].usage_metadata is not None


def test_thoughts_are_sent_only_when_asked_for() -> None:
    events: list[Event] = [TokenDelta("hmm", channel="reasoning"), TokenDelta("ok"), Finish("stop")]
    chunks = run(events, generationConfig={"thinkingConfig": {"includeThoughts": True}})
    parts = chunks[0].candidates[0].content.parts  # type: ignore[index,union-attr]
    assert parts is not None and parts[0].thought is True and parts[0].text == "hmm"
    assert chunks[1].text == "ok"
    assert [c.text for c in run(events)] == ["ok", ""]


def test_respond_renders_thought_text_and_function_call_parts() -> None:
    exchange = parse(
        body(generationConfig={"thinkingConfig": {"includeThoughts": True}}),
        f"{MODEL}:generateContent",
    )
    completion = Completion(
        "",
        Finish("tool_calls", Usage(3, 4)),
        reasoning="why",
        tool_calls=(ToolCall("c1", "get_weather", '{"city": "Oslo"}'),),
    )
    document = exchange.respond(completion)
    parts = document["candidates"][0]["content"]["parts"]
    assert parts == [
        {"text": "why", "thought": True},
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": "c1"}},
    ]
    assert document["candidates"][0]["finishReason"] == "STOP"
    with pytest.raises(GenerationError, match="get_weather"):
        exchange.respond(
            Completion("", Finish("tool_calls"), tool_calls=(ToolCall("c", "get_weather", "1"),))
        )
