"""The Responses dialect: request fields mapped or refused by name, and the semantic stream's
events, ids, indices and sequence numbers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.dialects._responses_conformance import check_stream
from tokenwire.completion import CompletionBuilder
from tokenwire.dialects import OpenAIResponsesDialect
from tokenwire.errors import GenerationError, InvalidRequestError, TokenwireError
from tokenwire.events import Event, Finish, TokenDelta, TokenLogprob, ToolCallDelta, Usage
from tokenwire.requests import ChatMessage, OutputConstraint, Tool, ToolCall, ToolChoice

MODEL = "tw-model"
dialect = OpenAIResponsesDialect()
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def parse(**fields: Any) -> Any:
    return dialect.parse({"model": MODEL, "input": "hi", **fields}, {}, "req_abc", MODEL)


def refused(field: str, **fields: Any) -> TokenwireError:
    with pytest.raises(InvalidRequestError) as caught:
        parse(**fields)
    error = caught.value
    body = dialect.render_error(error)
    assert body.status_code == 400
    assert body.content["error"]["param"] == field
    assert body.content["error"]["type"] == "invalid_request_error"
    return error


def test_string_input_is_one_user_message_after_the_instructions() -> None:
    request = parse(instructions="Be brief.", max_output_tokens=7, temperature=0.5).request
    assert request.messages == (ChatMessage("system", "Be brief."), ChatMessage("user", "hi"))
    assert (request.max_tokens, request.temperature) == (7, 0.5)


def test_input_items_map_to_chat_turns_and_calls_group_into_one_assistant_turn() -> None:
    items = [
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Let me see."}]},
        {"type": "function_call", "call_id": "c1", "name": "get", "arguments": '{"x":1}'},
        {"type": "function_call", "call_id": "c2", "name": "put", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c2", "output": "ok"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]
    assert parse(input=items).request.messages == (
        ChatMessage("system", "rules"),
        ChatMessage("user", "a"),
        ChatMessage(
            "assistant",
            "Let me see.",
            (ToolCall("c1", "get", '{"x":1}'), ToolCall("c2", "put", "{}")),
        ),
        ChatMessage("tool", "ok", tool_call_id="c2", name="put"),
        ChatMessage("tool", "sunny", tool_call_id="c1", name="get"),
    )


def test_agent_fields_map_to_the_request() -> None:
    request = parse(
        tools=[{"type": "function", "name": "get", "parameters": WEATHER, "strict": False}],
        tool_choice={"type": "function", "name": "get"},
        parallel_tool_calls=False,
        text={"format": {"type": "json_schema", "name": "w", "schema": WEATHER}},
        reasoning={"effort": "minimal"},
        include=["message.output_text.logprobs"],
        top_logprobs=3,
    ).request
    assert request.tools == (Tool("get", parameters=WEATHER, strict=False),)
    assert request.tool_choice == ToolChoice("required", ("get",))
    assert request.parallel_tool_calls is False
    assert request.constraint == OutputConstraint("json_schema", schema=WEATHER, name="w")
    assert (request.reasoning, request.logprobs, request.top_logprobs) == (False, True, 3)
    # The Responses API makes function tools strict unless told otherwise.
    assert parse(tools=[{"type": "function", "name": "f"}]).request.tools[0].strict is True
    assert parse(reasoning={"effort": "high"}).request.reasoning is True
    assert parse(text={"format": {"type": "json_object"}}).request.constraint == (
        OutputConstraint("json_object")
    )


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("tools[1].type", {"tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]}),
        ("tools[0].name", {"tools": [{"type": "function", "name": "bad name"}]}),
        ("background", {"background": True}),
        ("previous_response_id", {"previous_response_id": "resp_1"}),
        ("conversation", {"conversation": "conv_1"}),
        ("include[1]", {"include": ["reasoning.encrypted_content", "file_search_call.results"]}),
        (
            "input[0].content[1].type",
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "see"},
                            {"type": "input_image", "image_url": "https://x/y.png"},
                        ],
                    }
                ]
            },
        ),
        ("input[0].type", {"input": [{"type": "item_reference", "id": "msg_1"}]}),
        ("input[0].role", {"input": [{"role": "tool", "content": "x"}]}),
        ("tool_choice.name", {"tool_choice": {"type": "function", "name": "nope"}}),
        ("text.format.type", {"text": {"format": {"type": "grammar"}}}),
        # Unlike Chat's response_format, text.format must carry its schema.
        ("text.format.schema", {"text": {"format": {"type": "json_schema", "name": "s"}}}),
        (
            "text.format.name",
            {"text": {"format": {"type": "json_schema", "name": "s\n", "schema": {}}}},
        ),
        ("tools[0].name", {"tools": [{"type": "function", "name": "f\n"}]}),
        ("tools[0].type", {"tools": [{"type": "web_search"}]}),
        ("reasoning.effort", {"reasoning": {"effort": "max"}}),
        ("metadata", {"metadata": {str(i): "v" for i in range(17)}}),
        ("metadata", {"metadata": {"k": 1}}),
        ("max_output_tokens", {"max_output_tokens": 0}),
        ("input", {"input": []}),
        ("input", {"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}),
        ("conversation", {"conversation": False}),
    ],
)
def test_refusals_name_the_field(field: str, fields: dict[str, Any]) -> None:
    error = refused(field, **fields)
    assert "https://x" not in error.message


def test_background_false_and_unknown_fields_are_accepted() -> None:
    parse(background=False, n=3, truncation="auto", user="u", store=False)


def test_another_model_is_404_naming_model() -> None:
    with pytest.raises(TokenwireError) as caught:
        dialect.parse({"model": "other", "input": "hi"}, {}, "req_abc", MODEL)
    assert caught.value.status_code == 404


def stream(events: list[Event], **fields: Any) -> list[dict[str, Any]]:
    exchange = parse(stream=True, **fields)
    payloads = list(exchange.open())
    for event in events:
        payloads.extend(exchange.render(event))
    assert all(payload.event == json.loads(payload.data)["type"] for payload in payloads)
    assert not any(payload.sentinel for payload in payloads), "the stream has no [DONE]"
    documents = [json.loads(payload.data) for payload in payloads]
    check_stream(documents)
    return documents


def kinds(documents: list[dict[str, Any]]) -> list[str]:
    return [document["type"] for document in documents]


def test_text_stream_events_in_order() -> None:
    documents = stream(
        [TokenDelta("Hel", (1,)), TokenDelta("lo", (2,)), Finish("stop", Usage(5, 2, 1))]
    )
    assert kinds(documents) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = documents[2]["item"]
    assert added == {
        "type": "message",
        "id": added["id"],
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    assert added["id"].startswith("msg_")
    assert documents[6]["text"] == "Hello"
    final = documents[-1]["response"]
    assert final["status"] == "completed"
    assert final["id"] == "resp_abc"
    assert final["output"][0]["status"] == "completed"
    assert final["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 1, "cache_write_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 7,
    }


def test_reasoning_then_text_are_two_items_with_reasoning_text_events() -> None:
    documents = stream(
        [
            TokenDelta("hm", (1, 2), channel="reasoning"),
            TokenDelta("ok", (3,)),
            Finish("stop", Usage(1, 3)),
        ]
    )
    assert kinds(documents)[2:9] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
    ]
    reasoning, message = documents[-1]["response"]["output"]
    assert reasoning["id"].startswith("rs_") and reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "hm"}]
    assert message["content"][0]["text"] == "ok"
    assert documents[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == 2


def test_text_and_two_calls_are_three_items_with_their_own_indices() -> None:
    documents = stream(
        [
            TokenDelta("Checking."),
            ToolCallDelta(0, id="call_1", name="get", arguments='{"city":'),
            ToolCallDelta(0, arguments='"Oslo"}'),
            ToolCallDelta(1, id="call_2", name="get", arguments='{"city":"Rome"}'),
            Finish("tool_calls", Usage(1, 9)),
        ],
        tools=[{"type": "function", "name": "get", "parameters": WEATHER}],
    )
    output = documents[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call", "function_call"]
    assert [(item["call_id"], item["arguments"]) for item in output[1:]] == [
        ("call_1", '{"city":"Oslo"}'),
        ("call_2", '{"city":"Rome"}'),
    ]
    assert len({item["id"] for item in output}) == 3
    added = [d for d in documents if d["type"] == "response.output_item.added"]
    assert added[1]["item"] == {**output[1], "arguments": "", "status": "in_progress"}
    done = [d for d in documents if d["type"] == "response.function_call_arguments.done"]
    assert [(d["output_index"], d["arguments"]) for d in done] == [
        (1, '{"city":"Oslo"}'),
        (2, '{"city":"Rome"}'),
    ]
    assert documents[-1]["type"] == "response.completed"


def test_length_cut_ends_incomplete_with_max_output_tokens() -> None:
    documents = stream([TokenDelta("Hel"), Finish("length", Usage(1, 1))], max_output_tokens=1)
    final = documents[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][0]["status"] == "incomplete"
    assert final["response"]["max_output_tokens"] == 1


def test_in_band_failure_is_one_response_failed_with_the_output_so_far() -> None:
    exchange = parse(stream=True)
    payloads = [*exchange.open(), *exchange.render(TokenDelta("Hel"))]
    payloads += exchange.fail(GenerationError("The generation failed."))
    documents = [json.loads(payload.data) for payload in payloads]
    check_stream(documents)
    final = documents[-1]
    assert final["type"] == "response.failed"
    assert [d["type"] for d in documents].count("error") == 0
    assert final["response"]["status"] == "failed"
    assert final["response"]["error"] == {
        "code": "server_error",
        "message": "The generation failed.",
    }
    assert final["response"]["output"][0]["content"][0]["text"] == "Hel"
    assert final["response"]["output"][0]["status"] == "incomplete"
    # An error finish from the backend is the same failure.
    assert stream([TokenDelta("x"), Finish("error")])[-1]["type"] == "response.failed"


def test_logprobs_ride_on_each_delta_only_when_asked() -> None:
    entry = TokenLogprob("Hi", -0.5, (("Hi", -0.5), ("Yo", -1.5)))
    events: list[Event] = [TokenDelta("Hi", (1,), (entry,)), Finish("stop")]
    asked = stream(events, include=["message.output_text.logprobs"], top_logprobs=1)
    delta = next(d for d in asked if d["type"] == "response.output_text.delta")
    assert delta["logprobs"] == [
        {
            "token": "Hi",
            "logprob": -0.5,
            "bytes": [72, 105],
            "top_logprobs": [
                {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]},
                {"token": "Yo", "logprob": -1.5, "bytes": [89, 111]},
            ],
        }
    ]
    assert asked[-1]["response"]["output"][0]["content"][0]["logprobs"] == delta["logprobs"]
    plain = stream(events)
    assert next(d for d in plain if d["type"] == "response.output_text.delta")["logprobs"] == []


def test_response_object_echoes_the_request_settings() -> None:
    documents = stream(
        [Finish("stop")],
        metadata={"team": "a"},
        store=False,
        instructions="Be brief.",
        tools=[{"type": "function", "name": "get", "parameters": WEATHER}],
        tool_choice="required",
        text={"format": {"type": "json_object"}},
        reasoning={"effort": "low"},
    )
    created = documents[0]["response"]
    assert created["metadata"] == {"team": "a"}
    assert created["store"] is False
    assert created["instructions"] == "Be brief."
    assert created["tool_choice"] == "required"
    assert created["tools"][0]["name"] == "get" and created["tools"][0]["strict"] is True
    assert created["text"] == {"format": {"type": "json_object"}}
    assert created["reasoning"]["effort"] == "low"


def test_non_streamed_response_is_the_completed_object() -> None:
    exchange = parse(tools=[{"type": "function", "name": "get", "parameters": WEATHER}])
    events: list[Event] = [
        TokenDelta("hm", channel="reasoning"),
        ToolCallDelta(0, id="call_1", name="get", arguments='{"city":"Oslo"}'),
    ]
    builder = CompletionBuilder()
    for event in events:
        builder.add(event)
    body = exchange.respond(builder.build(Finish("tool_calls", Usage(2, 3))))
    assert body["status"] == "completed"
    assert [item["type"] for item in body["output"]] == ["reasoning", "function_call"]
    assert body["output"][1]["call_id"] == "call_1"
    streamed = stream([*events, Finish("tool_calls", Usage(2, 3))])[-1]["response"]
    # The same items as the stream would end with (the ids are per output index).
    assert [item["id"] for item in body["output"]] == [item["id"] for item in streamed["output"]]
