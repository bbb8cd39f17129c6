"""Agent fields in the upstream request body: tools, tool choice, history, constraints,
logprobs and reasoning, each sent only when the client asked for it."""

from __future__ import annotations

from typing import Any

import pytest
from tokenwire_upstream._request import ServerKind, request_body

from tokenwire import (
    ChatMessage,
    GenerationRequest,
    InvalidRequestError,
    OutputConstraint,
    Tool,
    ToolCall,
    ToolChoice,
)

WEATHER = Tool(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    strict=True,
)
TIME = Tool("get_time")
USER = (ChatMessage("user", "Weather and time in Paris?"),)


def body_of(server: ServerKind = "generic", **options: Any) -> dict[str, Any]:
    options.setdefault("messages", USER)
    path, body = request_body(GenerationRequest(model="m", **options), "up", server)
    assert path == "/v1/chat/completions"
    return body


def test_plain_chat_request_sends_no_agent_fields() -> None:
    body = body_of()
    agent_fields = {
        "tools", "tool_choice", "parallel_tool_calls", "response_format", "structured_outputs",
        "logprobs", "top_logprobs", "chat_template_kwargs", "reasoning_effort",
    }  # fmt: skip
    assert not agent_fields & body.keys()
    assert body["messages"] == [{"role": "user", "content": "Weather and time in Paris?"}]


def test_tools_are_sent_as_openai_functions() -> None:
    body = body_of(tools=(WEATHER, TIME))
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    # "auto" is the default once tools are sent; parallel calls too.
    assert "tool_choice" not in body and "parallel_tool_calls" not in body


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("none"), "none"),
        (ToolChoice("required"), "required"),
        (
            ToolChoice("required", ("get_time",)),
            {"type": "function", "function": {"name": "get_time"}},
        ),
    ],
)
def test_tool_choice_maps_to_openai_spelling(choice: ToolChoice, expected: object) -> None:
    body = body_of(tools=(WEATHER, TIME), tool_choice=choice)
    assert body["tool_choice"] == expected
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"]


def test_several_allowed_tools_are_offered_alone_and_required() -> None:
    other = Tool("get_news")
    body = body_of(
        tools=(WEATHER, other, TIME),
        tool_choice=ToolChoice("required", ("get_time", "get_weather")),
    )
    assert body["tool_choice"] == "required"
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"]


def test_tool_choice_naming_an_unoffered_tool_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="'get_news'") as caught:
        body_of(tools=(WEATHER,), tool_choice=ToolChoice("required", ("get_news",)))
    assert caught.value.param == "tool_choice"


def test_parallel_tool_calls_is_sent_only_when_turned_off_and_tools_are_sent() -> None:
    assert body_of(tools=(WEATHER,), parallel_tool_calls=False)["parallel_tool_calls"] is False
    assert "parallel_tool_calls" not in body_of(parallel_tool_calls=False)
    assert "tool_choice" not in body_of(tool_choice=ToolChoice("required"))


def test_history_carries_tool_calls_and_tool_results() -> None:
    history = (
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Paris"}'),)),
        ChatMessage("tool", "18C, sunny", tool_call_id="call_1", name="get_weather"),
        ChatMessage("assistant", "Checking.", tool_calls=(ToolCall("call_2", "get_time"),)),
    )  # fmt: skip
    generic = body_of(messages=history)["messages"]
    assert generic[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "18C, sunny", "tool_call_id": "call_1", "name": "get_weather"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ],
        },
    ]
    # OpenAI's own tool message has no `name`.
    assert body_of("openai", messages=history)["messages"][2] == {
        "role": "tool",
        "content": "18C, sunny",
        "tool_call_id": "call_1",
    }


def test_json_constraints_become_response_format() -> None:
    assert body_of(constraint=OutputConstraint("json_object"))["response_format"] == {
        "type": "json_object"
    }
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    named = body_of(constraint=OutputConstraint("json_schema", schema=schema, name="count"))
    assert named["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "count", "schema": schema, "strict": True},
    }
    unnamed = body_of(constraint=OutputConstraint("json_schema", schema=schema))
    assert unnamed["response_format"]["json_schema"]["name"] == "response"


def test_regex_and_grammar_go_to_vllm_structured_outputs() -> None:
    regex = body_of("vllm", constraint=OutputConstraint("regex", pattern=r"\d{3}"))
    assert regex["structured_outputs"] == {"regex": r"\d{3}"}
    grammar = 'start: "yes" | "no"'
    lark = body_of("vllm", constraint=OutputConstraint("grammar", pattern=grammar))
    assert lark["structured_outputs"] == {"grammar": grammar}
    assert "response_format" not in regex and "response_format" not in lark


@pytest.mark.parametrize("server", ["generic", "openai"])
@pytest.mark.parametrize("kind", ["regex", "grammar"])
def test_regex_and_grammar_are_refused_unless_the_upstream_is_vllm(
    server: ServerKind, kind: str
) -> None:
    constraint = OutputConstraint(kind, pattern="a+")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match=kind) as caught:
        body_of(server, constraint=constraint)
    assert caught.value.param == "response_format"


def test_logprobs_on_chat_send_the_flag_and_the_alternatives() -> None:
    assert body_of(logprobs=True, top_logprobs=3)["logprobs"] is True
    assert body_of(logprobs=True, top_logprobs=3)["top_logprobs"] == 3
    only = body_of(logprobs=True)
    assert only["logprobs"] is True and "top_logprobs" not in only
    assert "logprobs" not in body_of(top_logprobs=3)


def test_logprobs_on_completions_send_the_number_of_alternatives() -> None:
    path, body = request_body(
        GenerationRequest(model="m", prompt="Once", logprobs=True, top_logprobs=2), "up"
    )
    assert path == "/v1/completions"
    assert body["logprobs"] == 2 and "top_logprobs" not in body
    _, zero = request_body(GenerationRequest(model="m", prompt="Once", logprobs=True), "up")
    assert zero["logprobs"] == 0


@pytest.mark.parametrize("on", [True, False])
def test_reasoning_switches_the_chat_template_or_openai_effort(on: bool) -> None:
    for server in ("generic", "vllm"):
        body = body_of(server, reasoning=on)  # type: ignore[arg-type]
        assert body["chat_template_kwargs"] == {"enable_thinking": on, "thinking": on}
        assert "reasoning_effort" not in body
    openai = body_of("openai", reasoning=on)
    assert openai["reasoning_effort"] == ("medium" if on else "minimal")
    assert "chat_template_kwargs" not in openai


def test_tools_and_reasoning_on_a_raw_prompt_are_refused() -> None:
    with pytest.raises(InvalidRequestError) as tools:
        request_body(GenerationRequest(model="m", prompt="x", tools=(TIME,)), "up")
    assert tools.value.param == "tools"
    with pytest.raises(InvalidRequestError) as reasoning:
        request_body(GenerationRequest(model="m", prompt="x", reasoning=True), "up")
    assert reasoning.value.param == "reasoning"
