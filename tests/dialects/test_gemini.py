"""GeminiDialect: the model and action in the path, contents, and GenerateContentResponse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.genai import types as genai_types

from tokenwire.completion import Completion
from tokenwire.dialects import GeminiDialect
from tokenwire.errors import (
    AuthenticationError,
    DeadlineExceededError,
    GenerationError,
    InvalidRequestError,
    NotFoundError,
    QueueFullError,
    ServiceUnavailableError,
    TokenwireError,
)
from tokenwire.events import Finish, TokenDelta, Usage

MODEL = "tw-model"
DIALECT = GeminiDialect()


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "SECRET"}]}]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def parse(
    document: dict[str, Any], target: str = f"{MODEL}:streamGenerateContent", model: str = MODEL
) -> Any:
    return DIALECT.parse(document, {"target": target}, "req_abc123", model)


def response(document: dict[str, Any]) -> genai_types.GenerateContentResponse:
    return genai_types.GenerateContentResponse._from_response(response=document, kwargs={})


@pytest.mark.parametrize(
    ("target", "model", "stream"),
    [
        ("tw-model:streamGenerateContent", "tw-model", True),
        ("tw-model:generateContent", "tw-model", False),
        ("models/tw-model:generateContent", "tw-model", False),
        ("org/name:v1:streamGenerateContent", "org/name:v1", True),
    ],
)
def test_path_names_the_model_and_the_action(target: str, model: str, stream: bool) -> None:
    exchange = parse(body(), target, model)
    assert exchange.stream is stream and exchange.request.model == model


@pytest.mark.parametrize(
    "target",
    ["tw-model:countTokens", "tw-model", ":generateContent", "", "other:generateContent"],
)
def test_unknown_action_or_model_in_the_path_is_404(target: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        parse(body(), target)
    rendered = DIALECT.render_error(caught.value)
    assert rendered.status_code == 404
    assert rendered.content["error"]["status"] == "NOT_FOUND"
    assert rendered.content["error"]["code"] == 404


def test_parse_reads_contents_system_instruction_and_generation_config() -> None:
    request = parse(
        body(
            contents=[
                {"parts": [{"text": "a"}, {"text": "b"}]},
                {"role": "model", "parts": [{"text": "c"}]},
                {"role": "user", "parts": [{"text": "d"}]},
            ],
            systemInstruction={"parts": [{"text": "sys"}]},
            generationConfig={
                "maxOutputTokens": 30,
                "temperature": 1.5,
                "topP": 0.5,
                "topK": 40.0,
                "seed": 3,
                "stopSequences": ["x"],
                "candidateCount": 1,
                "responseMimeType": "text/plain",
            },
        )
    ).request
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "sys"),
        ("user", "ab"),
        ("assistant", "c"),
        ("user", "d"),
    ]
    assert (
        request.max_tokens,
        request.temperature,
        request.top_p,
        request.top_k,
        request.seed,
    ) == (
        30,
        1.5,
        0.5,
        40,
        3,
    )
    assert isinstance(request.top_k, int) and request.stop == ("x",)


def test_parse_accepts_snake_case_field_names() -> None:
    request = parse(
        body(
            system_instruction={"parts": [{"text": "sys"}]},
            generation_config={"max_output_tokens": 7, "top_k": 3},
        )
    ).request
    assert request.messages[0].content == "sys"
    assert (request.max_tokens, request.top_k) == (7, 3)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"contents": ...}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": "hi"}, "contents"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [{"role": [], "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [{"role": "user"}]}, "contents[0].parts"),
        ({"contents": [{"parts": [{"inlineData": {}}]}]}, "contents[0].parts[0]"),
        ({"contents": [{"parts": [{"text": 3}]}]}, "contents[0].parts[0].text"),
        ({"systemInstruction": 5}, "systemInstruction"),
        ({"generationConfig": []}, "generationConfig"),
        ({"generationConfig": {"candidateCount": 2}}, "generationConfig.candidateCount"),
        ({"generationConfig": {"maxOutputTokens": 0}}, "generationConfig.maxOutputTokens"),
        ({"generationConfig": {"temperature": 3}}, "generationConfig.temperature"),
        ({"generationConfig": {"topP": 0}}, "generationConfig.topP"),
        ({"generationConfig": {"topK": 2.5}}, "generationConfig.topK"),
        ({"generationConfig": {"seed": "s"}}, "generationConfig.seed"),
        (
            {"generationConfig": {"stopSequences": ["1", "2", "3", "4", "5", "6"]}},
            "generationConfig.stopSequences",
        ),
    ],
)
def test_parse_rejects_bad_fields_with_400(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse(body(**fields))
    assert caught.value.param == param
    assert "SECRET" not in caught.value.message
    rendered = DIALECT.render_error(caught.value)
    assert rendered.content == {
        "error": {"code": 400, "message": caught.value.message, "status": "INVALID_ARGUMENT"},
    }


def test_stream_renders_one_response_per_delta_and_a_final_one_with_usage() -> None:
    exchange = parse(body())
    assert exchange.open() == []
    payloads = [
        *exchange.render(TokenDelta("Hel")),
        *exchange.render(TokenDelta("")),
        *exchange.render(TokenDelta("lo")),
        *exchange.render(Finish("stop", Usage(6, 2, 4))),
    ]
    assert all(p.event is None and not p.sentinel for p in payloads)
    documents = [json.loads(p.data) for p in payloads]
    assert len(documents) == 3
    assert documents[0] == {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
        "modelVersion": MODEL,
        "responseId": "abc123",
    }
    last = response(documents[-1])
    assert last.text == ""
    assert last.candidates is not None
    assert last.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert last.usage_metadata is not None
    assert (
        last.usage_metadata.prompt_token_count,
        last.usage_metadata.candidates_token_count,
        last.usage_metadata.total_token_count,
        last.usage_metadata.cached_content_token_count,
    ) == (6, 2, 8, 4)


def test_cached_content_token_count_is_left_out_when_nothing_was_cached() -> None:
    document = json.loads(parse(body()).render(Finish("length", Usage(6, 2)))[0].data)
    assert "cachedContentTokenCount" not in document["usageMetadata"]
    assert document["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_error_finish_and_fail_render_an_error_object() -> None:
    exchange = parse(body())
    for payloads in (exchange.render(Finish("error")), exchange.fail(GenerationError("boom"))):
        assert len(payloads) == 1
        assert payloads[0].data.startswith('{"error":')
        assert json.loads(payloads[0].data)["error"]["status"] == "INTERNAL"


def test_respond_renders_a_whole_response() -> None:
    parsed = response(
        dict(
            parse(body(), f"{MODEL}:generateContent").respond(
                Completion("Hi", Finish("cancelled", Usage(1, 1)))
            )
        )
    )
    assert parsed.text == "Hi"
    assert parsed.candidates is not None
    assert parsed.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert parsed.model_version == MODEL and parsed.response_id == "abc123"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidRequestError("x"), "INVALID_ARGUMENT"),
        (AuthenticationError("x"), "UNAUTHENTICATED"),
        (NotFoundError("x"), "NOT_FOUND"),
        (QueueFullError("x"), "RESOURCE_EXHAUSTED"),
        (GenerationError("x"), "INTERNAL"),
        (ServiceUnavailableError("x"), "UNAVAILABLE"),
        (DeadlineExceededError("x"), "DEADLINE_EXCEEDED"),
    ],
)
def test_render_error_uses_google_status_names(error: TokenwireError, status: str) -> None:
    rendered = DIALECT.render_error(error)
    assert rendered.status_code == error.status_code
    assert rendered.content == {
        "error": {"code": error.status_code, "message": "x", "status": status}
    }


def test_class_attributes_match_the_api() -> None:
    assert DIALECT.name == "gemini"
    assert set(DIALECT.routes) == {"/v1beta/models/{target:path}", "/v1/models/{target:path}"}
    assert DIALECT.sse_fields is False and DIALECT.keepalive is None
