"""OpenAIChatDialect: parsing chat requests and rendering chat.completion(.chunk) shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tokenwire.completion import Completion
from tokenwire.dialects import OpenAIChatDialect
from tokenwire.errors import (
    ContextLengthExceededError,
    GenerationError,
    InvalidRequestError,
    NotFoundError,
    QueueFullError,
    ServiceUnavailableError,
    TokenwireError,
)
from tokenwire.events import Finish, TokenDelta, Usage
from tokenwire.interfaces import Payload

MODEL = "tw-model"
DIALECT = OpenAIChatDialect()


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "SECRET"}]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def parse(document: dict[str, Any]) -> Any:
    return DIALECT.parse(document, {}, "req_abc123", MODEL)


def decode(payloads: Any) -> list[Any]:
    return [p.data if p.sentinel else json.loads(p.data) for p in payloads]


def test_parse_maps_roles_joins_text_parts_and_reads_sampling_fields() -> None:
    exchange = parse(
        body(
            messages=[
                {"role": "developer", "content": "sys"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {"role": "assistant", "content": None},
                {"role": "user", "content": "c", "name": "bob"},
            ],
            temperature=0.2,
            top_p=0.9,
            seed=7,
            stop="END",
            n=1,
            stream=True,
        )
    )
    request = exchange.request
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "sys"),
        ("user", "ab"),
        ("assistant", ""),
        ("user", "c"),
    ]
    assert (request.temperature, request.top_p, request.seed) == (0.2, 0.9, 7)
    assert request.stop == ("END",)
    assert request.request_id == "req_abc123" and request.model == MODEL
    assert request.prompt is None and request.max_tokens is None
    assert exchange.stream is True


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert parse(body(max_tokens=10, max_completion_tokens=20)).request.max_tokens == 20
    assert parse(body(max_tokens=10)).request.max_tokens == 10
    assert parse(body(max_tokens=None)).request.max_tokens is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": ...}, "model"),
        ({"model": 3}, "model"),
        ({"messages": ...}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [[]]}, "messages[0]"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": [], "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": {}, "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
            "messages[0].content[0].text",
        ),
        ({"n": 2}, "n"),
        ({"n": 0}, "n"),
        ({"n": True}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_tokens": 1_000_001}, "max_tokens"),
        ({"max_tokens": 10.5}, "max_tokens"),
        ({"max_completion_tokens": "10"}, "max_completion_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": 1.5}, "seed"),
        ({"seed": 2**70}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [1]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": {"a": 1}}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": []}, "stream_options"),
        ({"stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
    ],
)
def test_parse_rejects_bad_fields_with_400_naming_the_field(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse(body(**fields))
    error = caught.value
    assert error.status_code == 400
    assert error.param == param
    assert param in error.message
    assert "SECRET" not in error.message
    rendered = DIALECT.render_error(error)
    assert rendered.status_code == 400
    assert rendered.content["error"]["type"] == "invalid_request_error"
    assert rendered.content["error"]["param"] == param


def test_parse_refuses_another_model_with_404_naming_both() -> None:
    with pytest.raises(NotFoundError) as caught:
        parse(body(model="gpt-4o"))
    assert "gpt-4o" in caught.value.message and MODEL in caught.value.message
    rendered = DIALECT.render_error(caught.value)
    assert rendered.status_code == 404
    assert rendered.content["error"]["code"] == "model_not_found"


def test_stream_without_include_usage_has_no_usage_key() -> None:
    exchange = parse(body(stream=True))
    payloads = [
        *exchange.open(),
        *exchange.render(TokenDelta("Hel")),
        *exchange.render(TokenDelta("")),
        *exchange.render(TokenDelta("lo")),
        *exchange.render(Finish("stop", Usage(5, 2))),
    ]
    assert all(p.event is None for p in payloads)
    assert payloads[-1] == Payload("[DONE]", sentinel=True)
    chunks = decode(payloads[:-1])
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert all("usage" not in c for c in chunks)
    assert {c["id"] for c in chunks} == {"chatcmpl-abc123"}
    assert len({c["created"] for c in chunks}) == 1 and isinstance(chunks[0]["created"], int)
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == MODEL
        ChatCompletionChunk.model_validate(chunk)
    assert all("\n" not in p.data for p in payloads)


def test_stream_with_include_usage_sends_null_usage_then_a_usage_chunk() -> None:
    exchange = parse(body(stream=True, stream_options={"include_usage": True}))
    payloads = [
        *exchange.open(),
        *exchange.render(TokenDelta("x")),
        *exchange.render(Finish("length", Usage(10, 1, cached_prompt_tokens=6))),
    ]
    chunks = decode(payloads)
    assert chunks[-1] == "[DONE]"
    *streamed, usage_chunk, _ = chunks
    assert all(c["usage"] is None for c in streamed)
    assert streamed[-1]["choices"][0]["finish_reason"] == "length"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 1,
        "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 6},
    }
    ChatCompletionChunk.model_validate(usage_chunk)


def test_include_usage_is_ignored_when_not_streaming() -> None:
    exchange = parse(body(stream_options={"include_usage": True}))
    assert exchange.stream is False
    assert "usage" not in decode(exchange.render(TokenDelta("x")))[0]


def test_cancelled_finish_ends_as_stop() -> None:
    chunks = decode(parse(body(stream=True)).render(Finish("cancelled")))
    assert chunks[0]["choices"][0]["finish_reason"] == "stop"


def test_error_finish_and_fail_render_an_in_band_error_then_done() -> None:
    exchange = parse(body(stream=True))
    for payloads in (
        exchange.render(Finish("error")),
        exchange.fail(GenerationError("The model crashed.")),
    ):
        first, done = decode(payloads)
        assert done == "[DONE]"
        assert set(first) == {"error"}
        assert first["error"]["type"] == "server_error"
        assert set(first["error"]) == {"message", "type", "param", "code"}
    assert decode(exchange.fail(GenerationError("The model crashed.")))[0]["error"]["message"] == (
        "The model crashed."
    )


def test_respond_renders_a_whole_chat_completion() -> None:
    exchange = parse(body())
    document = exchange.respond(Completion("Hello", Finish("stop", Usage(4, 1, 2))))
    completion = ChatCompletion.model_validate(document)
    assert completion.id == "chatcmpl-abc123"
    assert completion.choices[0].message.content == "Hello"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 5
    assert document["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
    with pytest.raises(GenerationError):
        exchange.respond(Completion("", Finish("error")))


@pytest.mark.parametrize(
    ("error", "status", "kind", "code"),
    [
        (InvalidRequestError("bad"), 400, "invalid_request_error", None),
        (
            ContextLengthExceededError("long"),
            400,
            "invalid_request_error",
            "context_length_exceeded",
        ),
        (NotFoundError("no model", param="model"), 404, "invalid_request_error", "model_not_found"),
        (QueueFullError("busy"), 429, "rate_limit_error", "rate_limit_exceeded"),
        (GenerationError("boom"), 500, "server_error", None),
        (ServiceUnavailableError("draining"), 503, "server_error", None),
    ],
)
def test_render_error_uses_openai_error_shape(
    error: TokenwireError, status: int, kind: str, code: str | None
) -> None:
    rendered = DIALECT.render_error(error)
    assert rendered.status_code == status
    assert rendered.content == {
        "error": {"message": error.message, "type": kind, "param": error.param, "code": code}
    }
    assert rendered.headers == {}


def test_class_attributes_match_the_api() -> None:
    assert DIALECT.name == "openai-chat"
    assert tuple(DIALECT.routes) == ("/v1/chat/completions",)
    assert DIALECT.sse_fields is True and DIALECT.keepalive is None
