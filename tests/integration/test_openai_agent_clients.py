"""The official openai SDK, against a real server, reads scripted tool calls, structured
output and logprobs; the same tool-call stream goes out alike over SSE, NDJSON and WebSocket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel
from websockets.sync.client import connect

from tests._support.asgi import sse_events
from tests._support.backends import EventScriptBackend
from tests._support.server import running_server
from tokenwire import create_app
from tokenwire.events import Finish, TokenDelta, TokenLogprob, ToolCallDelta, Usage
from tokenwire.requests import OutputConstraint, ToolChoice

MODEL = EventScriptBackend.model_id
USER = [{"role": "user", "content": "Weather in Paris?"}]


class GetWeather(BaseModel):
    city: str
    days: int


class Person(BaseModel):
    name: str
    age: int


TOOL_EVENTS = [
    ToolCallDelta(0, "call_1", "GetWeather", token_ids=(1,)),
    ToolCallDelta(0, arguments='{"city": "Par', token_ids=(2,)),
    ToolCallDelta(0, arguments='is", "days": 3}', token_ids=(3,)),
    Finish("tool_calls", Usage(5, 3)),
]
PERSON_JSON = '{"name": "Ada", "age": 36}'
PERSON_EVENTS = [
    TokenDelta(PERSON_JSON[:10], (1,)),
    TokenDelta(PERSON_JSON[10:], (2,)),
    Finish("stop", Usage(5, 2)),
]


@pytest.fixture(scope="module")
def backend() -> EventScriptBackend:
    return EventScriptBackend([])


@pytest.fixture(scope="module")
def url(backend: EventScriptBackend) -> Iterator[str]:
    with running_server(create_app(backend)) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as sdk:
        yield sdk


def test_stream_with_a_pydantic_tool_parses_the_call_arguments(
    backend: EventScriptBackend, client: openai.OpenAI
) -> None:
    backend.events = TOOL_EVENTS
    with client.chat.completions.stream(
        model=MODEL, messages=USER, tools=[openai.pydantic_function_tool(GetWeather)]
    ) as stream:
        completion = stream.get_final_completion()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert (call.id, call.function.name) == ("call_1", "GetWeather")
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}
    assert call.function.parsed_arguments == GetWeather(city="Paris", days=3)
    [tool] = backend.requests[-1].tools
    assert (tool.name, tool.strict) == ("GetWeather", True)
    assert tool.parameters["properties"]["days"] == {"title": "Days", "type": "integer"}


def test_a_named_tool_choice_reaches_the_backend_and_finishes_as_stop(
    backend: EventScriptBackend, client: openai.OpenAI
) -> None:
    backend.events = TOOL_EVENTS
    completion = client.chat.completions.create(
        model=MODEL,
        messages=USER,
        tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice={"type": "function", "function": {"name": "GetWeather"}},
    )
    assert backend.requests[-1].tool_choice == ToolChoice("required", ("GetWeather",))
    assert completion.choices[0].finish_reason == "stop"
    [call] = completion.choices[0].message.tool_calls or []
    assert call.function.arguments == '{"city": "Paris", "days": 3}'


def test_parse_with_a_pydantic_response_format_non_streamed_and_streamed(
    backend: EventScriptBackend, client: openai.OpenAI
) -> None:
    backend.events = PERSON_EVENTS
    whole = client.chat.completions.parse(model=MODEL, messages=USER, response_format=Person)
    assert whole.choices[0].message.parsed == Person(name="Ada", age=36)
    constraint = backend.requests[-1].constraint
    assert isinstance(constraint, OutputConstraint)
    assert (constraint.kind, constraint.name) == ("json_schema", "Person")
    assert constraint.schema is not None and set(constraint.schema["required"]) == {"name", "age"}
    with client.chat.completions.stream(
        model=MODEL, messages=USER, response_format=Person
    ) as stream:
        streamed = stream.get_final_completion()
    assert streamed.choices[0].message.parsed == Person(name="Ada", age=36)


def test_logprobs_arrive_in_chunks_and_whole_responses(
    backend: EventScriptBackend, client: openai.OpenAI
) -> None:
    logprobs = (TokenLogprob("Hi", -0.5, (("Hi", -0.5), ("Hey", -1.25))),)
    backend.events = [TokenDelta("Hi", (1,), logprobs), Finish("stop", Usage(1, 1))]
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=USER, stream=True, logprobs=True, top_logprobs=2
        )
    )
    content = [
        entry
        for chunk in chunks
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content or []
    ]
    assert [(e.token, e.logprob, e.bytes) for e in content] == [("Hi", -0.5, [72, 105])]
    assert [(t.token, t.logprob) for t in content[0].top_logprobs] == [
        ("Hi", -0.5),
        ("Hey", -1.25),
    ]
    whole = client.chat.completions.create(model=MODEL, messages=USER, logprobs=True)
    assert whole.choices[0].logprobs is not None
    assert [e.token for e in whole.choices[0].logprobs.content or []] == ["Hi"]


def _strip(payload: dict[str, Any]) -> dict[str, Any]:
    """A chunk without what differs between two responses (its id and creation time)."""
    return {k: v for k, v in payload.items() if k not in ("id", "created")}


def test_a_tool_call_stream_is_the_same_over_sse_ndjson_and_websocket(
    backend: EventScriptBackend, url: str
) -> None:
    backend.events = TOOL_EVENTS
    body = {
        "model": MODEL,
        "stream": True,
        "messages": USER,
        "tools": [{"type": "function", "function": {"name": "GetWeather"}}],
    }
    sse = httpx.post(f"{url}/v1/chat/completions", json=body)
    events = sse_events(sse.content)
    assert events[-1]["data"] == "[DONE]"
    over_sse = [_strip(json.loads(e["data"])) for e in events[:-1]]
    ndjson = httpx.post(
        f"{url}/v1/chat/completions", json=body, headers={"accept": "application/x-ndjson"}
    )
    over_ndjson = [_strip(json.loads(line)) for line in ndjson.text.splitlines() if line]
    with connect(url.replace("http://", "ws://") + "/v1/chat/completions") as ws:
        ws.send(json.dumps(body))
        over_ws = []
        while (frame := ws.recv()) != "[DONE]":
            over_ws.append(_strip(json.loads(frame)))
    assert over_sse == over_ndjson == over_ws
    deltas = [chunk["choices"][0]["delta"] for chunk in over_sse]
    # As OpenAI streams a call: the role rides on the call's first chunk, content null.
    assert deltas[0] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "GetWeather", "arguments": ""},
            }
        ],
    }
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[:-1])
    assert json.loads(arguments) == {"city": "Paris", "days": 3}
    assert over_sse[-1]["choices"][0]["finish_reason"] == "tool_calls"
