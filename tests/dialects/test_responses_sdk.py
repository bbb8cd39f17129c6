"""The official openai SDK's Responses client against a real server: streamed text, the stream
helper's final response, a function-call round trip, structured output; and the same payloads
over SSE, NDJSON and WebSocket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel
from websockets.sync.client import connect

from tests._support.backends import EventScriptBackend
from tests._support.server import running_server
from tests.dialects._responses_conformance import TERMINAL, check_stream
from tokenwire import create_app
from tokenwire.backends.echo import EchoBackend
from tokenwire.events import Event, Finish, TokenDelta, ToolCallDelta, Usage
from tokenwire.requests import ChatMessage, ToolCall

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "parameters": WEATHER}]
EVENTS: list[Event] = [
    TokenDelta("Let me think.", (1, 2), channel="reasoning"),
    TokenDelta("Checking"),
    TokenDelta(" now."),
    ToolCallDelta(0, id="call_1", name="get_weather", arguments='{"city": "Os'),
    ToolCallDelta(0, arguments='lo"}'),
    Finish("tool_calls", Usage(10, 8)),
]


@pytest.fixture(scope="module")
def backend() -> EventScriptBackend:
    return EventScriptBackend(EVENTS)


@pytest.fixture(scope="module")
def url(backend: EventScriptBackend) -> Iterator[str]:
    with running_server(create_app(backend, playground=False)) as base:
        yield base


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    with running_server(create_app(EchoBackend(), playground=False)) as base:
        yield base


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)


def test_create_stream_yields_typed_events_in_order(url: str) -> None:
    events = list(
        client(url).responses.create(model="scripted", input="hi", tools=TOOLS, stream=True)
    )
    check_stream([event.model_dump(mode="json", exclude_unset=True) for event in events])
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Checking now."
    final = events[-1]
    assert final.type == "response.completed"
    assert [item.type for item in final.response.output] == [
        "reasoning",
        "message",
        "function_call",
    ]


def test_stream_helper_gives_the_final_response(url: str) -> None:
    with client(url).responses.stream(model="scripted", input="hi", tools=TOOLS) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        response = stream.get_final_response()
    assert "".join(deltas) == response.output_text == "Checking now."
    call = response.output[2]
    assert call.type == "function_call"
    assert (call.call_id, call.name, call.arguments) == (
        "call_1",
        "get_weather",
        '{"city": "Oslo"}',
    )
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, 8)
    assert response.usage.output_tokens_details.reasoning_tokens == 2


def test_non_streamed_create_returns_the_response_object(url: str) -> None:
    response = client(url).responses.create(model="scripted", input="hi", tools=TOOLS)
    assert response.status == "completed"
    assert response.output_text == "Checking now."
    assert response.id.startswith("resp_")


def test_function_output_goes_back_as_a_tool_message(url: str, backend: EventScriptBackend) -> None:
    sdk = client(url)
    first = sdk.responses.create(model="scripted", input="weather in Oslo?", tools=TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    follow_up: list[Any] = [
        {"role": "user", "content": "weather in Oslo?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
    ]
    sdk.responses.create(model="scripted", input=follow_up, tools=TOOLS)
    assert backend.requests[-1].messages == (
        ChatMessage("user", "weather in Oslo?"),
        ChatMessage(
            "assistant",
            "Checking now.",
            (ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),),
        ),
        ChatMessage("tool", "sunny", tool_call_id="call_1", name="get_weather"),
    )


def test_echo_round_trip_calls_the_tool_then_answers(echo_server: str) -> None:
    sdk = client(echo_server)
    with sdk.responses.stream(
        model="echo", input="call get_weather", tools=TOOLS, tool_choice="required"
    ) as stream:
        first = stream.get_final_response()
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather"
    assert json.loads(call.arguments).keys() == {"city"}
    second = sdk.responses.create(
        model="echo",
        input=[
            {"role": "user", "content": "call get_weather"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
        tools=TOOLS,
        tool_choice="none",
    )
    assert second.status == "completed"
    assert second.output_text


class Weather(BaseModel):
    city: str


def test_parse_with_a_pydantic_text_format(echo_server: str) -> None:
    response = client(echo_server).responses.parse(
        model="echo", input="weather please", text_format=Weather
    )
    assert isinstance(response.output_parsed, Weather)


def _sse_documents(base: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", f"{base}/v1/responses", json=body, timeout=10) as response:
        lines = list(response.iter_lines())
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    documents = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert names == [document["type"] for document in documents], "event: is the type"
    return documents


def _ndjson_documents(base: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{base}/v1/responses",
        json=body,
        headers={"accept": "application/x-ndjson"},
        timeout=10,
    )
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def _websocket_documents(base: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    with connect(base.replace("http://", "ws://") + "/v1/responses") as socket:
        socket.send(json.dumps(body))
        while not documents or documents[-1]["type"] not in TERMINAL:
            documents.append(json.loads(socket.recv(timeout=10)))
    return documents


def _stable(documents: list[dict[str, Any]]) -> str:
    """The stream with its per-request ids and times blanked out."""
    text = json.dumps(documents)
    response_id = documents[0]["response"]["id"]
    tail = response_id.removeprefix("resp_")
    created = documents[0]["response"]["created_at"]
    return text.replace(tail, "ID").replace(f'"created_at": {created}', '"created_at": 0')


def test_sse_ndjson_and_websocket_carry_the_same_payloads(url: str) -> None:
    body = {"model": "scripted", "input": "hi", "tools": TOOLS, "stream": True}
    streams = [
        _sse_documents(url, body),
        _ndjson_documents(url, body),
        _websocket_documents(url, body),
    ]
    for documents in streams:
        check_stream(documents)
    assert _stable(streams[0]) == _stable(streams[1]) == _stable(streams[2])


def test_refusal_is_a_400_the_sdk_raises_with_the_param(url: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(url).responses.create(model="scripted", input="hi", tools=[{"type": "web_search"}])
    assert caught.value.body["param"] == "tools[0].type"  # type: ignore[index]
