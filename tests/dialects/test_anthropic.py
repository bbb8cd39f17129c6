"""AnthropicDialect: Messages requests, the typed event stream, and its error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from tokenwire.completion import Completion
from tokenwire.dialects import AnthropicDialect
from tokenwire.errors import (
    AuthenticationError,
    DeadlineExceededError,
    GenerationError,
    InvalidRequestError,
    NotFoundError,
    QueueFullError,
    RequestTooLargeError,
    ServiceUnavailableError,
    TokenwireError,
)
from tokenwire.events import Event, Finish, TokenDelta, Usage

MODEL = "tw-model"
DIALECT = AnthropicDialect()
EVENTS_ADAPTER: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "SECRET"}],
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def parse(document: dict[str, Any]) -> Any:
    return DIALECT.parse(document, {}, "req_abc123", MODEL)


def run(exchange: Any, events: list[Event]) -> list[tuple[str | None, Any]]:
    payloads = [*exchange.open()]
    for event in events:
        payloads.extend(exchange.render(event))
    return [(p.event, json.loads(p.data)) for p in payloads]


def test_parse_puts_system_first_and_joins_text_blocks() -> None:
    exchange = parse(
        body(
            system=[{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}],
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "bye"},
            ],
            temperature=0.5,
            top_p=0.8,
            top_k=20,
            stop_sequences=["END"],
            stream=True,
        )
    )
    request = exchange.request
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "be brief"),
        ("user", "hi"),
        ("assistant", "hello"),
        ("user", "bye"),
    ]
    assert (request.max_tokens, request.temperature, request.top_p, request.top_k) == (
        100,
        0.5,
        0.8,
        20,
    )
    assert request.stop == ("END",) and exchange.stream is True


def test_parse_accepts_a_string_system_prompt() -> None:
    messages = parse(body(system="sys")).request.messages
    assert messages[0].role == "system" and messages[0].content == "sys"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": ...}, "model"),
        ({"max_tokens": ...}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2_000_000}, "max_tokens"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": [], "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image"}]}]},
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "user", "content": ["x"]}]}, "messages[0].content[0]"),
        ({"system": 5}, "system"),
        ({"system": [{"type": "text"}]}, "system[0].text"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": -1}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"stop_sequences": [None]}, "stop_sequences"),
        ({"stream": 1}, "stream"),
    ],
)
def test_parse_rejects_bad_fields_with_400(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse(body(**fields))
    assert caught.value.param == param
    assert param in caught.value.message and "SECRET" not in caught.value.message
    rendered = DIALECT.render_error(caught.value)
    assert rendered.status_code == 400
    assert rendered.content == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": caught.value.message},
    }


def test_parse_refuses_another_model_with_not_found_error() -> None:
    with pytest.raises(NotFoundError) as caught:
        parse(body(model="claude-opus"))
    assert "claude-opus" in caught.value.message and MODEL in caught.value.message
    assert DIALECT.render_error(caught.value).content["error"]["type"] == "not_found_error"


def test_stream_renders_the_messages_event_sequence() -> None:
    rendered = run(
        parse(body(stream=True)),
        [
            TokenDelta("Hel"),
            TokenDelta(""),
            TokenDelta("lo"),
            Finish("stop", Usage(10, 2)),
        ],
    )
    assert [name for name, _ in rendered] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(name == data["type"] for name, data in rendered)
    start = rendered[0][1]["message"]
    assert start["id"] == "msg_abc123" and start["model"] == MODEL and start["content"] == []
    assert start["role"] == "assistant" and start["stop_reason"] is None
    assert rendered[1][1]["content_block"] == {"type": "text", "text": ""}
    assert [d["delta"] for _, d in rendered[3:5]] == [
        {"type": "text_delta", "text": "Hel"},
        {"type": "text_delta", "text": "lo"},
    ]
    message_delta = rendered[6][1]
    assert message_delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert message_delta["usage"] == {
        "input_tokens": 10,
        "output_tokens": 2,
        "cache_read_input_tokens": 0,
    }
    for name, data in rendered:
        if name != "ping":
            EVENTS_ADAPTER.validate_python(data)


def test_sdk_accumulator_builds_the_message_with_stop_sequence_and_cache_reads() -> None:
    rendered = run(
        parse(body(stream=True)),
        [
            TokenDelta("a"),
            TokenDelta("b"),
            Finish("stop", Usage(10, 2, 7), stop_sequence="##"),
        ],
    )
    snapshot = None
    for name, data in rendered:
        if name != "ping":
            snapshot = accumulate_event(
                event=EVENTS_ADAPTER.validate_python(data), current_snapshot=snapshot, json_bufs={}
            )
    assert snapshot is not None
    assert snapshot.content[0].type == "text" and snapshot.content[0].text == "ab"
    assert (snapshot.stop_reason, snapshot.stop_sequence) == ("stop_sequence", "##")
    assert snapshot.usage.input_tokens == 3
    assert snapshot.usage.cache_read_input_tokens == 7
    assert snapshot.usage.output_tokens == 2


@pytest.mark.parametrize(
    ("reason", "stop_reason"),
    [("length", "max_tokens"), ("cancelled", "end_turn"), ("stop", "end_turn")],
)
def test_finish_reasons_map_to_stop_reasons(reason: Any, stop_reason: str) -> None:
    exchange = parse(body(stream=True))
    rendered = run(exchange, [Finish(reason)])
    assert rendered[-2][1]["delta"]["stop_reason"] == stop_reason
    assert exchange.respond(Completion("", Finish(reason)))["stop_reason"] == stop_reason


def test_error_finish_and_fail_render_an_error_event() -> None:
    exchange = parse(body(stream=True))
    for payloads in (exchange.render(Finish("error")), exchange.fail(GenerationError("boom"))):
        assert len(payloads) == 1 and payloads[0].event == "error"
        document = json.loads(payloads[0].data)
        assert document["type"] == "error" and document["error"]["type"] == "api_error"
    assert json.loads(exchange.fail(GenerationError("boom"))[0].data)["error"]["message"] == "boom"


def test_respond_renders_a_whole_message() -> None:
    exchange = parse(body())
    document = exchange.respond(Completion("Hi", Finish("stop", Usage(9, 1, 4), stop_sequence="X")))
    message = Message.model_validate(document)
    assert message.id == "msg_abc123" and message.type == "message"
    assert message.content[0].type == "text" and message.content[0].text == "Hi"
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "X"
    assert message.usage.input_tokens == 5 and message.usage.cache_read_input_tokens == 4
    with pytest.raises(GenerationError):
        exchange.respond(Completion("", Finish("error")))


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidRequestError("x"), "invalid_request_error"),
        (AuthenticationError("x"), "authentication_error"),
        (NotFoundError("x"), "not_found_error"),
        (RequestTooLargeError("x"), "request_too_large"),
        (QueueFullError("x"), "rate_limit_error"),
        (GenerationError("x"), "api_error"),
        (ServiceUnavailableError("x"), "overloaded_error"),
        (DeadlineExceededError("x"), "timeout_error"),
    ],
)
def test_render_error_uses_anthropic_error_types(error: TokenwireError, kind: str) -> None:
    rendered = DIALECT.render_error(error)
    assert rendered.status_code == error.status_code
    assert rendered.content == {"type": "error", "error": {"type": kind, "message": "x"}}


def test_class_attributes_match_the_api() -> None:
    assert DIALECT.name == "anthropic"
    assert tuple(DIALECT.routes) == ("/v1/messages",)
    assert DIALECT.sse_fields is True
    assert DIALECT.keepalive is not None and DIALECT.keepalive.event == "ping"
    assert json.loads(DIALECT.keepalive.data) == {"type": "ping"}
