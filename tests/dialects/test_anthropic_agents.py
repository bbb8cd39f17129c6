"""AnthropicDialect for agents: tools, tool_choice, tool_use/tool_result history, thinking,
structured output, and the thinking/text/tool_use blocks it streams and returns."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from tokenwire.completion import Completion
from tokenwire.dialects import AnthropicDialect
from tokenwire.errors import GenerationError, InvalidRequestError
from tokenwire.events import Event, Finish, TokenDelta, ToolCallDelta, Usage
from tokenwire.requests import ChatMessage, OutputConstraint, Tool, ToolCall, ToolChoice

MODEL = "tw-model"
DIALECT = AnthropicDialect()
EVENTS_ADAPTER: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "SECRET"}],
    }
    base.update(fields)
    return base


def parse(document: dict[str, Any]) -> Any:
    return DIALECT.parse(document, {}, "req_abc123", MODEL)


def run(events: list[Event]) -> list[dict[str, Any]]:
    exchange = parse(body(stream=True))
    payloads = [*exchange.open()]
    for event in events:
        payloads.extend(exchange.render(event))
    documents = [json.loads(p.data) for p in payloads]
    assert all(p.event == d["type"] for p, d in zip(payloads, documents, strict=True))
    return documents


def accumulate(documents: list[dict[str, Any]]) -> Message:
    snapshot = None
    json_bufs: dict[int, bytes] = {}  # the SDK's partial-JSON buffers, one per block
    for document in documents:
        if document["type"] != "ping":
            event = EVENTS_ADAPTER.validate_python(document)
            snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return snapshot


def test_parse_reads_tools_tool_choice_thinking_and_output_config() -> None:
    request = parse(
        body(
            tools=[{**WEATHER, "strict": True}, {"name": "b", "input_schema": {"type": "object"}}],
            tool_choice={"type": "tool", "name": "b", "disable_parallel_tool_use": True},
            thinking={"type": "enabled", "budget_tokens": 2048},
            output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
        )
    ).request
    assert request.tools == (
        Tool("get_weather", "Weather in a city", WEATHER["input_schema"], strict=True),
        Tool("b", "", {"type": "object"}),
    )
    assert request.tool_choice == ToolChoice("required", ("b",))
    assert request.parallel_tool_calls is False
    assert request.reasoning is True
    assert request.constraint == OutputConstraint("json_schema", {"type": "object"})


@pytest.mark.parametrize(
    ("fields", "choice", "reasoning"),
    [
        ({}, ToolChoice("auto"), None),
        ({"tool_choice": {"type": "any"}}, ToolChoice("required"), None),
        (
            {"tool_choice": {"type": "none"}, "thinking": {"type": "disabled"}},
            ToolChoice("none"),
            False,
        ),
        (
            {"tool_choice": {"type": "auto"}, "thinking": {"type": "adaptive"}},
            ToolChoice("auto"),
            True,
        ),
    ],
)
def test_tool_choice_and_thinking_map_to_the_request(
    fields: dict[str, Any], choice: ToolChoice, reasoning: bool | None
) -> None:
    request = parse(body(tools=[WEATHER], **fields)).request
    assert (request.tool_choice, request.reasoning, request.parallel_tool_calls) == (
        choice,
        reasoning,
        True,
    )


def test_the_beta_output_format_field_is_read_too() -> None:
    fmt: dict[str, Any] = {"type": "json_schema", "schema": {"type": "object", "required": ["a"]}}
    assert parse(body(output_format=fmt)).request.constraint == OutputConstraint(
        "json_schema", fmt["schema"]
    )


def test_history_with_tool_use_and_tool_results_becomes_turns_in_order() -> None:
    request = parse(
        body(
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "xx"},
                        {"type": "text", "text": "Looking."},
                        {
                            "type": "tool_use",
                            "id": "t1",
                            "name": "get_weather",
                            "input": {"city": "Oslo"},
                        },
                        {"type": "tool_use", "id": "t2", "name": "get_time", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "rainy"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "t2",
                            "content": [
                                {"type": "text", "text": "no "},
                                {"type": "text", "text": "clock"},
                            ],
                            "is_error": True,
                        },
                        {"type": "text", "text": "and now?"},
                    ],
                },
            ]
        )
    ).request
    assert request.messages == (
        ChatMessage("user", "weather?"),
        ChatMessage(
            "assistant",
            "Looking.",
            tool_calls=(
                ToolCall("t1", "get_weather", '{"city": "Oslo"}'),
                ToolCall("t2", "get_time", "{}"),
            ),
        ),
        ChatMessage("tool", "rainy", tool_call_id="t1", name="get_weather"),
        ChatMessage("tool", "Error: no clock", tool_call_id="t2", name="get_time"),
        ChatMessage("user", "and now?"),
    )


def test_a_tool_result_for_no_earlier_call_has_no_name() -> None:
    messages = parse(
        body(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x"}]}])
    ).request.messages
    assert messages == (ChatMessage("tool", "", tool_call_id="x", name=None),)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": {}}, "tools"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type"),
        ({"tools": [{"input_schema": {"type": "object"}}]}, "tools[0].name"),
        ({"tools": [{"name": "a b", "input_schema": {"type": "object"}}]}, "tools[0].name"),
        ({"tools": [{"name": "a\n", "input_schema": {"type": "object"}}]}, "tools[0].name"),
        ({"tools": [{"name": "a"}]}, "tools[0].input_schema"),
        (
            {"tools": [{"name": "a", "input_schema": {"type": "string"}}]},
            "tools[0].input_schema.type",
        ),
        ({"tools": [{**WEATHER, "strict": "yes"}]}, "tools[0].strict"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tool_choice": {"type": "required"}}, "tool_choice.type"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
        (
            {"tool_choice": {"type": "auto", "disable_parallel_tool_use": 1}},
            "tool_choice.disable_parallel_tool_use",
        ),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format.type"),
        ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format.schema"),
        ({"output_config": []}, "output_config"),
        ({"output_format": {"type": "json_schema", "schema": "x"}}, "output_format.schema"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}],
                    }
                ]
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "a"}]}
                ]
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "a", "name": "b", "input": []}],
                    }
                ]
            },
            "messages[0].content[0].input",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": 5}]}
                ]
            },
            "messages[0].content[0].tool_use_id",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "a",
                                "content": [{"type": "image"}],
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].content[0].type",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": 1}]}]},
            "messages[0].content[0].thinking",
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


def test_stream_renders_thinking_text_and_each_tool_call_as_its_own_block() -> None:
    documents = run(
        [
            TokenDelta("Let me", channel="reasoning"),
            TokenDelta(" think.", channel="reasoning"),
            TokenDelta("Checking."),
            ToolCallDelta(0, id="toolu_1", name="get_weather"),
            ToolCallDelta(0, arguments='{"city": '),
            ToolCallDelta(0, arguments='"Oslo"}'),
            ToolCallDelta(1, id="toolu_2", name="get_time", arguments="{}"),
            Finish("tool_calls", Usage(5, 9)),
        ]
    )
    kinds = [(d["type"], d.get("index"), d.get("delta", {}).get("type")) for d in documents]
    assert kinds == [
        ("message_start", None, None),
        ("content_block_start", 0, None),
        ("ping", None, None),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, None),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, None),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, None),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_stop", 3, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert documents[10]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {},
    }
    assert documents[-2]["delta"]["stop_reason"] == "tool_use"
    message = accumulate(documents)
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[0].thinking == "Let me think."  # type: ignore[union-attr]
    assert message.content[2].input == {"city": "Oslo"}  # type: ignore[union-attr]
    assert message.content[3].input == {}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"


def test_a_stream_that_starts_with_a_tool_call_has_no_text_block() -> None:
    documents = run([ToolCallDelta(0, id="t", name="f", arguments='{"a":1}'), Finish("tool_calls")])
    starts = [d["content_block"]["type"] for d in documents if d["type"] == "content_block_start"]
    assert starts == ["tool_use"]
    assert accumulate(documents).content[0].input == {"a": 1}  # type: ignore[union-attr]


def test_respond_renders_thinking_text_and_tool_use_blocks() -> None:
    exchange = parse(body())
    completion = Completion(
        "",
        Finish("tool_calls", Usage(3, 4)),
        reasoning="why",
        tool_calls=(ToolCall("t1", "get_weather", '{"city": "Oslo"}'),),
    )
    message = Message.model_validate(exchange.respond(completion))
    assert [block.type for block in message.content] == ["thinking", "tool_use"]
    assert message.content[1].input == {"city": "Oslo"}  # type: ignore[union-attr]
    assert message.content[1].id == "t1"  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    with pytest.raises(GenerationError, match="get_weather"):
        exchange.respond(
            Completion("", Finish("tool_calls"), tool_calls=(ToolCall("t", "get_weather", "[1"),))
        )
