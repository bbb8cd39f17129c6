"""OpenAICompletionsDialect: raw-prompt requests and text_completion shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types import Completion

from tokenwire.completion import Completion as Gathered
from tokenwire.dialects import OpenAICompletionsDialect
from tokenwire.dialects.openai_completions import DEFAULT_MAX_TOKENS
from tokenwire.errors import GenerationError, InvalidRequestError, NotFoundError
from tokenwire.events import Finish, TokenDelta, Usage
from tokenwire.interfaces import Payload

MODEL = "tw-model"
DIALECT = OpenAICompletionsDialect()


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": MODEL, "prompt": "SECRET"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def parse(document: dict[str, Any]) -> Any:
    return DIALECT.parse(document, {}, "req_abc123", MODEL)


def decode(payloads: Any) -> list[Any]:
    return [p.data if p.sentinel else json.loads(p.data) for p in payloads]


def test_parse_reads_prompt_and_sampling_fields() -> None:
    request = parse(body(prompt=["Once upon"], max_tokens=30, stop=["\n"], temperature=0)).request
    assert request.prompt == "Once upon" and request.messages is None
    assert request.max_tokens == 30 and request.stop == ("\n",) and request.temperature == 0


def test_max_tokens_defaults_to_the_documented_16() -> None:
    assert parse(body()).request.max_tokens == DEFAULT_MAX_TOKENS == 16


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": ...}, "prompt"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": {"text": "x"}}, "prompt"),
        ({"n": 3}, "n"),
        ({"best_of": 2}, "best_of"),
        ({"echo": True}, "echo"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["1", "2", "3", "4", "5"]}, "stop"),
    ],
)
def test_parse_rejects_bad_fields_with_400(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse(body(**fields))
    assert caught.value.param == param
    assert "SECRET" not in caught.value.message
    assert DIALECT.render_error(caught.value).content["error"]["param"] == param


def test_parse_refuses_another_model_with_404() -> None:
    with pytest.raises(NotFoundError):
        parse(body(model="davinci"))


def test_stream_renders_text_completion_chunks_usage_and_done() -> None:
    exchange = parse(body(stream=True, stream_options={"include_usage": True}))
    assert exchange.open() == []
    payloads = [
        *exchange.render(TokenDelta("a")),
        *exchange.render(TokenDelta("")),
        *exchange.render(TokenDelta("b")),
        *exchange.render(Finish("length", Usage(3, 2, 1))),
    ]
    assert payloads[-1] == Payload("[DONE]", sentinel=True)
    chunks = decode(payloads[:-1])
    assert [c["choices"][0]["text"] for c in chunks[:3]] == ["a", "b", ""]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:3]] == [None, None, "length"]
    assert all(c["usage"] is None for c in chunks[:3])
    assert chunks[3]["choices"] == [] and chunks[3]["usage"]["total_tokens"] == 5
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert {c["id"] for c in chunks} == {"cmpl-abc123"}
    Completion.model_validate(chunks[2])


def test_stream_without_include_usage_ends_with_finish_chunk_then_done() -> None:
    chunks = decode(parse(body(stream=True)).render(Finish("stop", Usage(1, 1))))
    assert len(chunks) == 2 and chunks[1] == "[DONE]"
    assert chunks[0]["choices"][0]["finish_reason"] == "stop" and "usage" not in chunks[0]


def test_fail_renders_an_in_band_error_then_done() -> None:
    first, done = decode(parse(body(stream=True)).fail(GenerationError("boom")))
    assert first == {
        "error": {"message": "boom", "type": "server_error", "param": None, "code": None}
    }
    assert done == "[DONE]"


def test_respond_renders_a_whole_text_completion() -> None:
    document = parse(body()).respond(Gathered("Hi there", Finish("stop", Usage(2, 2))))
    completion = Completion.model_validate(document)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "Hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 2


def test_class_attributes_match_the_api() -> None:
    assert DIALECT.name == "openai-completions"
    assert tuple(DIALECT.routes) == ("/v1/completions",)
    assert DIALECT.sse_fields is True and DIALECT.keepalive is None
