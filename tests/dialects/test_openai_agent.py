"""The OpenAI dialects' agent fields: tools, tool calls, response_format, logprobs, reasoning."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types import Completion as TextCompletion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.completion_choice import Logprobs

from tokenwire.completion import Completion
from tokenwire.dialects import OpenAIChatDialect, OpenAICompletionsDialect
from tokenwire.errors import InvalidRequestError
from tokenwire.events import Finish, TokenDelta, TokenLogprob, ToolCallDelta, Usage
from tokenwire.requests import ChatMessage, OutputConstraint, Tool, ToolCall, ToolChoice

MODEL = "tw-model"
CHAT = OpenAIChatDialect()
COMPLETIONS = OpenAICompletionsDialect()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def chat(**fields: Any) -> Any:
    document: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "SECRET"}]}
    document.update(fields)
    return CHAT.parse(document, {}, "req_abc123", MODEL)


def decode(payloads: Any) -> list[Any]:
    return [p.data if p.sentinel else json.loads(p.data) for p in payloads]


def test_parse_reads_tools_choice_and_parallel_calls() -> None:
    request = chat(tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False).request
    assert request.tools == (
        Tool(
            "get_weather",
            "Weather in a city",
            {"type": "object", "properties": {"city": {"type": "string"}}},
            strict=True,
        ),
        Tool("get_time"),
    )
    assert request.tool_choice == ToolChoice("required")
    assert request.parallel_tool_calls is False
    assert chat(tools=[TIME]).request.tool_choice == ToolChoice("auto")
    assert chat(tools=[TIME]).request.parallel_tool_calls is True
    assert chat(tools=[TIME], tool_choice="none").request.tool_choice == ToolChoice("none")


def test_a_named_function_choice_requires_exactly_that_tool() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    request = chat(tools=[WEATHER, TIME], tool_choice=choice).request
    assert request.tool_choice == ToolChoice("required", ("get_time",))


def test_parse_reads_tool_calls_and_tool_results_naming_the_called_tool() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sun"}]},
        {"role": "tool", "tool_call_id": "call_unknown", "content": "?"},
    ]
    assert chat(messages=messages).request.messages == (
        ChatMessage("user", "weather?"),
        ChatMessage("assistant", "", (ToolCall("call_1", "get_weather", '{"city":"Paris"}'),)),
        ChatMessage("tool", "sun", tool_call_id="call_1", name="get_weather"),
        ChatMessage("tool", "?", tool_call_id="call_unknown"),
    )


@pytest.mark.parametrize(
    ("response_format", "constraint"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, OutputConstraint("json_object")),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "Person", "schema": {"type": "object"}, "strict": True},
            },
            OutputConstraint("json_schema", schema={"type": "object"}, name="Person"),
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "Any"}},
            OutputConstraint("json_schema", schema={"type": "object"}, name="Any"),
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "Any", "schema": {}}},
            OutputConstraint("json_schema", schema={"type": "object"}, name="Any"),
        ),
    ],
)
def test_parse_maps_response_format_to_a_constraint(
    response_format: dict[str, Any], constraint: OutputConstraint | None
) -> None:
    assert chat(response_format=response_format).request.constraint == constraint


def test_chat_function_tools_are_not_strict_unless_told() -> None:
    # The Responses API's are (see test_openai_responses); the two share one parser.
    tools = chat(tools=[{"type": "function", "function": {"name": "f"}}]).request.tools
    assert tools == (Tool("f", strict=False),)


def test_parse_reads_logprobs_and_reasoning() -> None:
    request = chat(logprobs=True, top_logprobs=3).request
    assert (request.logprobs, request.top_logprobs) == (True, 3)
    assert (chat().request.logprobs, chat().request.top_logprobs) == (False, 0)
    assert chat().request.reasoning is None
    assert chat(reasoning_effort="none").request.reasoning is False
    assert chat(reasoning_effort="minimal").request.reasoning is False
    assert chat(reasoning_effort="low").request.reasoning is True
    assert chat(reasoning_effort="high").request.reasoning is True
    kwargs = {"enable_thinking": False}
    assert chat(chat_template_kwargs=kwargs).request.reasoning is False
    assert chat(chat_template_kwargs={"thinking": True}).request.reasoning is True
    assert chat(chat_template_kwargs={"other": 1}).request.reasoning is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": {}}, "tools"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
        ({"tools": [TIME, {"type": "web_search", "function": {}}]}, "tools[1].type"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": 3}}]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "has space"}}]},
            "tools[0].function.name",
        ),
        # A name must match the rule whole: a final newline is not let by (`$` alone would).
        (
            {"tools": [{"type": "function", "function": {"name": "f\n"}}]},
            "tools[0].function.name",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]},
            "tools[0].function.strict",
        ),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tool_choice": "none", "tools": []}, "tool_choice"),
        ({"tools": [TIME], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [TIME], "tool_choice": 1}, "tool_choice"),
        ({"tools": [TIME], "tool_choice": {"type": "file_search"}}, "tool_choice.type"),
        ({"tools": [TIME], "tool_choice": {"type": "function"}}, "tool_choice.function"),
        (
            {"tools": [TIME], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice.function.name",
        ),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"response_format": "json"}, "response_format"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": 1}}},
            "response_format.json_schema.schema",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a\n"}}},
            "response_format.json_schema.name",
        ),
        ({"logprobs": 1}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": False, "top_logprobs": 0}, "top_logprobs"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"chat_template_kwargs": []}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"enable_thinking": 1}}, "chat_template_kwargs.enable_thinking"),
        (
            {"chat_template_kwargs": {"enable_thinking": True, "thinking": {}}},
            "chat_template_kwargs.thinking",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": {}}]},
            "messages[0].tool_calls",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"type": "function"}]}]},
            "messages[0].tool_calls[0].function",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {"messages": [{"role": "tool", "tool_call_id": 5, "content": "x"}]},
            "messages[0].tool_call_id",
        ),
        ({"messages": [{"role": "tool", "tool_call_id": "c"}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0].type",
        ),
    ],
)
def test_parse_rejects_bad_agent_fields_with_400_naming_the_field(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        chat(**fields)
    error = caught.value
    assert error.param == param and param in error.message
    assert "SECRET" not in error.message
    rendered = CHAT.render_error(error).content["error"]
    assert rendered["param"] == param and rendered["type"] == "invalid_request_error"


def test_tool_choice_without_tools_says_why_as_openai_does() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        chat(tool_choice="required")
    assert "only allowed when 'tools' are specified" in caught.value.message


def stream(exchange: Any, events: list[Any]) -> list[Any]:
    payloads = [*exchange.open()]
    for event in events:
        payloads.extend(exchange.render(event))
    chunks = decode(payloads)
    assert chunks[-1] == "[DONE]"
    for chunk in chunks[:-1]:
        ChatCompletionChunk.model_validate(chunk)
    return chunks[:-1]


CALL_EVENTS = [
    ToolCallDelta(0, "call_a", "get_weather", '{"ci'),
    ToolCallDelta(0, arguments='ty":"Paris"}'),
    ToolCallDelta(0),  # nothing to say: no chunk
    ToolCallDelta(1, "call_b", "get_time"),
    ToolCallDelta(1, arguments="{}"),
    Finish("tool_calls", Usage(3, 9)),
]


def test_tool_call_deltas_stream_as_openai_does() -> None:
    chunks = stream(chat(stream=True, tools=[WEATHER, TIME]), CALL_EVENTS)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"ci'},
                }
            ],
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "tool_calls"
    assert sum("role" in d for d in deltas) == 1


def test_a_turn_with_tools_that_answers_in_text_announces_the_role_first() -> None:
    exchange = chat(stream=True, tools=[TIME])
    assert exchange.open() == []
    chunks = stream(exchange, [TokenDelta("Hi"), Finish("stop")])
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hi"}, {}]


def test_a_forced_named_function_finishes_as_stop_like_openai() -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    exchange = chat(stream=True, tools=[WEATHER], tool_choice=choice)
    assert stream(exchange, CALL_EVENTS)[-1]["choices"][0]["finish_reason"] == "stop"
    forced = chat(tools=[WEATHER], tool_choice="required")
    assert stream(forced, CALL_EVENTS)[-1]["choices"][0]["finish_reason"] == "tool_calls"
    completion = Completion("", Finish("tool_calls"), tool_calls=(ToolCall("c", "get_weather"),))
    assert exchange.respond(completion)["choices"][0]["finish_reason"] == "stop"
    assert forced.respond(completion)["choices"][0]["finish_reason"] == "tool_calls"


LOGPROBS = (
    TokenLogprob("é", -0.25, (("é", -0.25), ("e", -1.5))),
    TokenLogprob("!", -0.5),
)


def test_logprobs_stream_with_bytes_and_alternatives_only_when_asked() -> None:
    events = [TokenDelta("é!", (1, 2), LOGPROBS), Finish("stop")]
    chunks = stream(chat(stream=True, logprobs=True, top_logprobs=2), events)
    assert chunks[1]["choices"][0]["delta"] == {"content": "é!"}
    assert chunks[1]["choices"][0]["logprobs"] == {
        "content": [
            {
                "token": "é",
                "logprob": -0.25,
                "bytes": [195, 169],
                "top_logprobs": [
                    {"token": "é", "logprob": -0.25, "bytes": [195, 169]},
                    {"token": "e", "logprob": -1.5, "bytes": [101]},
                ],
            },
            {"token": "!", "logprob": -0.5, "bytes": [33], "top_logprobs": []},
        ],
        "refusal": None,
    }
    unasked = stream(chat(stream=True), events)
    assert all(c["choices"][0]["logprobs"] is None for c in unasked)


def test_reasoning_streams_under_both_field_names_before_the_answer() -> None:
    events = [
        TokenDelta("Let me think.", channel="reasoning"),
        TokenDelta("", channel="reasoning"),
        TokenDelta("Paris."),
        Finish("stop"),
    ]
    deltas = [c["choices"][0]["delta"] for c in stream(chat(stream=True), events)]
    assert deltas[1:] == [
        {"reasoning": "Let me think.", "reasoning_content": "Let me think."},
        {"content": "Paris."},
        {},
    ]


def test_non_streamed_tool_calls_have_null_content_and_reasoning() -> None:
    completion = Completion(
        "",
        Finish("tool_calls", Usage(2, 5)),
        reasoning="hmm",
        tool_calls=(ToolCall("call_a", "get_weather", '{"city":"Paris"}'),),
    )
    response = chat(tools=[WEATHER]).respond(completion)
    ChatCompletion.model_validate(response)
    choice = response["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "reasoning": "hmm",
        "reasoning_content": "hmm",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    plain = chat().respond(Completion("", Finish("stop")))["choices"][0]["message"]
    assert plain == {"role": "assistant", "content": "", "refusal": None}


def test_non_streamed_logprobs_only_when_asked() -> None:
    completion = Completion("é!", Finish("stop"), logprobs=LOGPROBS)
    asked = chat(logprobs=True).respond(completion)["choices"][0]["logprobs"]
    assert [entry["token"] for entry in asked["content"]] == ["é", "!"]
    assert asked["refusal"] is None
    assert chat().respond(completion)["choices"][0]["logprobs"] is None


def completion_request(**fields: Any) -> Any:
    document: dict[str, Any] = {"model": MODEL, "prompt": "SECRET"}
    document.update(fields)
    return COMPLETIONS.parse(document, {}, "req_abc123", MODEL)


def test_completions_legacy_logprobs_count_maps_to_top_logprobs() -> None:
    assert (completion_request(logprobs=3).request.logprobs, 3) == (
        True,
        completion_request(logprobs=3).request.top_logprobs,
    )
    request = completion_request(logprobs=0).request
    assert (request.logprobs, request.top_logprobs) == (True, 0)
    assert completion_request().request.logprobs is False
    for bad in (6, -1, True, "2"):
        with pytest.raises(InvalidRequestError) as caught:
            completion_request(logprobs=bad)
        assert caught.value.param == "logprobs"


def test_completions_stream_legacy_logprobs_with_running_text_offsets() -> None:
    exchange = completion_request(stream=True, logprobs=2)
    second = (TokenLogprob(" ok", -0.1, ((" ok", -0.1), (" no", -2.0))),)
    payloads = [
        *exchange.render(TokenDelta("é!", (1, 2), LOGPROBS)),
        *exchange.render(TokenDelta(" ok", (3,), second)),
        *exchange.render(Finish("stop")),
    ]
    chunks = decode(payloads)[:-1]
    for chunk in chunks[:-1]:
        Logprobs.model_validate(chunk["choices"][0]["logprobs"])
    TextCompletion.model_validate(chunks[-1])
    assert [c["choices"][0]["logprobs"] for c in chunks] == [
        {
            "tokens": ["é", "!"],
            "token_logprobs": [-0.25, -0.5],
            "top_logprobs": [{"é": -0.25, "e": -1.5}, {}],
            "text_offset": [0, 1],
        },
        {
            "tokens": [" ok"],
            "token_logprobs": [-0.1],
            "top_logprobs": [{" ok": -0.1, " no": -2.0}],
            "text_offset": [2],
        },
        None,
    ]
    whole = completion_request(logprobs=1).respond(
        Completion("é!", Finish("stop"), logprobs=LOGPROBS)
    )
    assert whole["choices"][0]["logprobs"]["text_offset"] == [0, 1]
    assert (
        completion_request().respond(Completion("x", Finish("stop"), logprobs=LOGPROBS))["choices"][
            0
        ]["logprobs"]
        is None
    )
