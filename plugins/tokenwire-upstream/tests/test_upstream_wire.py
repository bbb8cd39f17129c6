"""The OpenAI wire shapes and the error mapping, without a network."""

from __future__ import annotations

import email.utils
import json
import time

import httpx
import pytest
from tokenwire_upstream._errors import error_from_status, error_from_transport, retry_after
from tokenwire_upstream._openai import Chunk, UpstreamStreamError, finish_reason, parse_chunk
from tokenwire_upstream._request import request_body
from tokenwire_upstream._tool_calls import ToolCallFragment

from tokenwire import (
    ChatMessage,
    ContextLengthExceededError,
    GenerationError,
    GenerationRequest,
    InvalidRequestError,
    NotFoundError,
    QueueFullError,
    RequestTooLargeError,
    ServiceUnavailableError,
    TokenLogprob,
    Usage,
)


def test_chat_request_maps_every_sampling_field() -> None:
    request = GenerationRequest(
        model="front",
        messages=(ChatMessage("system", "be brief"), ChatMessage("user", "hi")),
        max_tokens=7,
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        seed=11,
        stop=("END", "\n\n"),
    )
    path, body = request_body(request, "upstream-model")
    assert path == "/v1/chat/completions"
    assert body == {
        "model": "upstream-model",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
        "max_tokens": 7,
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 11,
        "stop": ["END", "\n\n"],
    }


def test_prompt_request_goes_to_completions_and_leaves_unset_fields_out() -> None:
    path, body = request_body(GenerationRequest(model="m", prompt="Once"), "up")
    assert path == "/v1/completions"
    assert body["prompt"] == "Once"
    assert not {"max_tokens", "top_k", "seed", "stop", "messages"} & body.keys()


def test_chat_chunk_yields_its_delta_text() -> None:
    data = json.dumps({"choices": [{"delta": {"content": "hel"}, "finish_reason": None}]})
    assert parse_chunk(data, chat=True) == Chunk(text="hel")


def test_completions_chunk_yields_its_text_and_finish_reason() -> None:
    data = json.dumps({"choices": [{"text": "lo", "finish_reason": "length"}]})
    assert parse_chunk(data, chat=False) == Chunk(text="lo", finish_reason="length")


def test_usage_chunk_carries_cached_prompt_tokens() -> None:
    data = json.dumps(
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": 4,
                "total_tokens": 16,
                "prompt_tokens_details": {"cached_tokens": 8},
            },
        }
    )
    assert parse_chunk(data, chat=True).usage == Usage(12, 4, 8)


def test_usage_without_details_or_with_nonsense_counts_as_zero() -> None:
    data = json.dumps(
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": "x",
                                  "prompt_tokens_details": None}}
    )  # fmt: skip
    assert parse_chunk(data, chat=True).usage == Usage(3, 0, 0)


def test_vllm_stop_reason_is_read() -> None:
    data = json.dumps({"choices": [{"delta": {}, "finish_reason": "stop", "stop_reason": "END"}]})
    assert parse_chunk(data, chat=True).stop_reason == "END"


def test_in_band_error_payload_raises_with_a_safe_message() -> None:
    data = json.dumps(
        {"error": {"message": "CUDA OOM at /srv/model.py:42", "type": "server_error"}}
    )
    with pytest.raises(UpstreamStreamError) as caught:
        parse_chunk(data, chat=True)
    assert isinstance(caught.value, GenerationError)
    assert "CUDA" not in caught.value.message
    assert "CUDA OOM" in caught.value.detail


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '"text"'])
def test_malformed_chunk_raises_generation_error(data: str) -> None:
    with pytest.raises(GenerationError):
        parse_chunk(data, chat=True)


@pytest.mark.parametrize(
    ("upstream", "ours"),
    [("stop", "stop"), ("length", "length"), ("tool_calls", "stop"), (None, "stop")],
)
def test_finish_reasons_map_to_ours(upstream: str | None, ours: str) -> None:
    assert finish_reason(upstream) == ours


def openai_error(message: str, code: str | None = None, param: str | None = None) -> bytes:
    return json.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": code,
            }
        }
    ).encode()


def test_400_keeps_the_upstream_message_and_param() -> None:
    error = error_from_status(
        400, openai_error("temperature too high", param="temperature"), {}, "m"
    )
    assert type(error) is InvalidRequestError
    assert (error.message, error.param) == ("temperature too high", "temperature")


def test_400_about_context_length_becomes_context_length_exceeded() -> None:
    body = openai_error("This model's maximum context length is 2048 tokens.")
    assert isinstance(error_from_status(400, body, {}, "m"), ContextLengthExceededError)


def test_400_with_a_non_json_body_still_maps() -> None:
    error = error_from_status(400, b"<html>bad</html>", {}, "m")
    assert type(error) is InvalidRequestError
    assert error.message == "The upstream server rejected the request."


def test_404_names_the_model_the_client_asked_for_not_the_upstream_text() -> None:
    error = error_from_status(404, openai_error("model llama-secret-7b not found"), {}, "front")
    assert isinstance(error, NotFoundError)
    assert "front" in error.message and "secret" not in error.message


def test_413_and_429_and_5xx_map_to_their_errors() -> None:
    assert isinstance(error_from_status(413, b"", {}, "m"), RequestTooLargeError)
    busy = error_from_status(429, b"", {"retry-after": "7"}, "m")
    assert isinstance(busy, QueueFullError) and busy.retry_after == 7
    assert isinstance(error_from_status(503, b"", {}, "m"), ServiceUnavailableError)
    failed = error_from_status(500, openai_error("Traceback: secret"), {}, "m")
    assert type(failed) is GenerationError and "secret" not in failed.message


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("2.5") == 2.5
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after(later) <= 30
    assert retry_after(None) == 1.0
    assert retry_after("soon") == 1.0
    assert retry_after("-3") == 1.0


def test_transport_failures_map_by_phase() -> None:
    connect = httpx.ConnectError("refused")
    assert isinstance(error_from_transport(connect, streaming=False), ServiceUnavailableError)
    assert isinstance(
        error_from_transport(httpx.PoolTimeout("full"), streaming=False), QueueFullError
    )
    lost = error_from_transport(httpx.RemoteProtocolError("peer closed"), streaming=True)
    assert type(lost) is GenerationError


def test_sampling_fields_the_client_left_out_are_left_to_the_upstream() -> None:
    _, omitted = request_body(GenerationRequest(model="m", prompt="Once"), "up")
    assert not {"temperature", "top_p", "top_k"} & omitted.keys()
    sent = GenerationRequest(model="m", prompt="Once", temperature=1.0, top_p=1.0)
    _, body = request_body(sent, "up")
    assert (body["temperature"], body["top_p"]) == (1.0, 1.0)


def test_chat_chunk_reads_reasoning_under_either_name() -> None:
    for field in ("reasoning_content", "reasoning"):
        data = json.dumps({"choices": [{"delta": {field: "hmm"}, "finish_reason": None}]})
        assert parse_chunk(data, chat=True) == Chunk(reasoning="hmm")


def test_chat_chunk_reads_tool_call_fragments() -> None:
    data = json.dumps(
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "c1", "type": "function",
                             "function": {"name": "f", "arguments": ""}},
                            {"index": 1, "function": {"arguments": '{"a"'}},
                        ]
                    },
                    "finish_reason": None,
                }
            ]
        }
    )  # fmt: skip
    assert parse_chunk(data, chat=True).tool_calls == (
        ToolCallFragment(0, "c1", "f", ""),
        ToolCallFragment(1, None, None, '{"a"'),
    )


def test_chat_logprobs_become_token_logprobs_most_likely_first() -> None:
    logprobs = {
        "content": [
            {"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
             "top_logprobs": [{"token": "Hello", "logprob": -2.5},
                              {"token": "Hi", "logprob": -0.1}]},
            {"token": "!", "logprob": 0, "top_logprobs": []},
        ]
    }  # fmt: skip
    data = json.dumps({"choices": [{"delta": {"content": "Hi!"}, "logprobs": logprobs}]})
    assert parse_chunk(data, chat=True, top_logprobs=2).logprobs == (
        TokenLogprob("Hi", -0.1, (("Hi", -0.1), ("Hello", -2.5))),
        TokenLogprob("!", 0.0, ()),
    )


def test_completions_logprobs_are_read_and_cut_to_the_alternatives_asked_for() -> None:
    # vLLM's legacy endpoint adds the chosen token to the alternatives.
    logprobs = {
        "tokens": ["lo", " there"],
        "token_logprobs": [-0.5, -1.0],
        "top_logprobs": [{"lo": -0.5, "la": -1.5, "le": -0.9}, None],
        "text_offset": [0, 2],
    }
    data = json.dumps({"choices": [{"text": "lo there", "logprobs": logprobs}]})
    assert parse_chunk(data, chat=False, top_logprobs=2).logprobs == (
        TokenLogprob("lo", -0.5, (("lo", -0.5), ("le", -0.9))),
        TokenLogprob(" there", -1.0, ()),
    )


def test_a_turn_that_called_tools_finishes_with_tool_calls() -> None:
    assert finish_reason("tool_calls", called_tools=True) == "tool_calls"
    # OpenAI and vLLM report a forced (named or required) call as "stop".
    assert finish_reason("stop", called_tools=True) == "tool_calls"
    assert finish_reason("length", called_tools=True) == "length"


def test_upstream_400_about_tools_keeps_its_message_for_the_client() -> None:
    # vLLM's error shape: the fields at the top level.
    body = json.dumps(
        {"object": "error", "type": "BadRequestError", "param": None, "code": 400,
         "message": '"auto" tool choice requires --enable-auto-tool-choice to be set'}
    ).encode()  # fmt: skip
    error = error_from_status(400, body, {}, "m")
    assert type(error) is InvalidRequestError
    assert error.message.startswith('"auto" tool choice requires')
    schema = openai_error("Invalid schema for response_format 'x'", param="response_format")
    rejected = error_from_status(400, schema, {}, "m")
    assert (rejected.message, rejected.param) == (
        "Invalid schema for response_format 'x'",
        "response_format",
    )
