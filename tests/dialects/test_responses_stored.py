"""Stored and background responses through the official openai SDK against a real server:
retrieve, delete, previous_response_id, background with resume by starting_after, cancel; and
the Responses API's WebSocket mode (`response.create`, `response.cancel`)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
from websockets.sync.client import connect

from tests._support.backends import EventScriptBackend
from tests._support.server import running_server
from tests.dialects._responses_conformance import check_stream
from tokenwire import ResponseStoreConfig, create_app
from tokenwire.backends.echo import EchoBackend
from tokenwire.events import Event, Finish, TokenDelta, Usage
from tokenwire.requests import ChatMessage, GenerationRequest

WORDS = " ".join(f"w{i}" for i in range(40))


class EndlessBackend:
    """Streams a word every `delay` seconds until closed (or `max_tokens` words), and records
    that it was closed."""

    model_id = "echo"

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.started = 0
        self.closed = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self.started += 1
        try:
            limit = request.max_tokens or 100_000
            for i in range(limit):
                await anyio.sleep(self.delay)
                yield TokenDelta(f" t{i}")
            yield Finish("length", Usage(1, limit))
        finally:
            self.closed += 1


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with running_server(create_app(EchoBackend(delay=0.005), playground=False)) as base:
        yield base


@pytest.fixture(scope="module")
def scripted() -> EventScriptBackend:
    return EventScriptBackend([TokenDelta("Hello"), TokenDelta(" there."), Finish("stop")])


@pytest.fixture(scope="module")
def scripted_url(scripted: EventScriptBackend) -> Iterator[str]:
    with running_server(create_app(scripted, playground=False)) as base:
        yield base


def test_a_stored_response_is_retrieved_as_created(echo_url: str) -> None:
    sdk = client(echo_url)
    created = sdk.responses.create(model="echo", input="keep this answer")
    retrieved = sdk.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    streamed = list(sdk.responses.create(model="echo", input="and this one", stream=True))
    final = streamed[-1]
    assert final.type == "response.completed"
    assert sdk.responses.retrieve(final.response.id).output_text == "and this one"


def test_previous_response_id_hands_the_backend_the_earlier_turns(
    scripted_url: str, scripted: EventScriptBackend
) -> None:
    sdk = client(scripted_url)
    first = sdk.responses.create(model="scripted", input="first question", instructions="Be brief.")
    second = sdk.responses.create(
        model="scripted",
        input="second question",
        previous_response_id=first.id,
        instructions="Be kind.",
    )
    assert second.previous_response_id == first.id
    # The earlier instructions are not carried over; the new ones lead.
    assert scripted.requests[-1].messages == (
        ChatMessage("system", "Be kind."),
        ChatMessage("user", "first question"),
        ChatMessage("assistant", "Hello there."),
        ChatMessage("user", "second question"),
    )
    sdk.responses.create(model="scripted", input="third", previous_response_id=second.id)
    assert [m.content for m in scripted.requests[-1].messages] == [
        "first question",
        "Hello there.",
        "second question",
        "Hello there.",
        "third",
    ]


def test_previous_response_id_refusals_name_the_field(scripted_url: str) -> None:
    sdk = client(scripted_url)
    unstored = sdk.responses.create(model="scripted", input="hi", store=False)
    for previous in ("resp_unknown", unstored.id):
        with pytest.raises(openai.NotFoundError) as caught:  # the API's status for it
            sdk.responses.create(model="scripted", input="x", previous_response_id=previous)
        assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(unstored.id)


def test_delete_forgets_the_response(echo_url: str) -> None:
    sdk = client(echo_url)
    created = sdk.responses.create(model="echo", input="short lived")
    reply = httpx.delete(f"{echo_url}/v1/responses/{created.id}")
    assert reply.json() == {"id": created.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.retrieve(created.id)
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(created.id)


def test_unknown_ids_are_404_in_openai_shape(echo_url: str) -> None:
    sdk = client(echo_url)
    for call in (sdk.responses.retrieve, sdk.responses.cancel):
        with pytest.raises(openai.NotFoundError) as caught:
            call("resp_nothing")
        assert "resp_nothing" in caught.value.body["message"]  # type: ignore[index]


def test_expired_responses_are_gone() -> None:
    app = create_app(EchoBackend(), playground=False, responses=ResponseStoreConfig(0.3))
    with running_server(app) as base:
        sdk = client(base)
        created = sdk.responses.create(model="echo", input="brief")
        assert sdk.responses.retrieve(created.id).status == "completed"
        time.sleep(0.4)
        with pytest.raises(openai.NotFoundError):
            sdk.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            sdk.responses.create(model="echo", input="x", previous_response_id=created.id)


def test_background_resumes_after_a_drop_with_nothing_lost_or_repeated(echo_url: str) -> None:
    sdk = client(echo_url)
    whole = sdk.responses.create(model="echo", input=WORDS)
    created = sdk.responses.create(model="echo", input=WORDS, background=True)
    assert created.background is True and created.status in ("queued", "in_progress")
    events = []
    with sdk.responses.retrieve(created.id, stream=True) as stream:
        for event in stream:
            events.append(event)
            if len(events) == 7:
                break  # the connection drops
    while events[-1].type != "response.completed":
        with sdk.responses.retrieve(
            created.id, stream=True, starting_after=events[-1].sequence_number
        ) as stream:
            for event in stream:
                events.append(event)
                if len(events) % 9 == 0:
                    break
    assert [e.sequence_number for e in events] == list(range(len(events)))
    check_stream([e.model_dump(mode="json", exclude_unset=True) for e in events])
    final = events[-1].response
    assert final.output_text == whole.output_text == WORDS
    assert sdk.responses.retrieve(created.id).model_dump() == final.model_dump()


def test_a_background_response_streams_from_create_and_outlives_the_drop(echo_url: str) -> None:
    sdk = client(echo_url)
    with sdk.responses.create(model="echo", input=WORDS, background=True, stream=True) as stream:
        first = [next(iter(stream)) for _ in range(3)]
    response_id = first[0].response.id  # type: ignore[union-attr]
    rest = list(sdk.responses.retrieve(response_id, stream=True, starting_after=2))
    assert [e.sequence_number for e in first + rest] == list(range(len(first) + len(rest)))
    assert rest[-1].response.output_text == WORDS  # type: ignore[union-attr]


def test_a_finished_background_response_replays_from_any_point(echo_url: str) -> None:
    sdk = client(echo_url)
    created = sdk.responses.create(model="echo", input="a b c", background=True)
    deadline = time.monotonic() + 5
    while sdk.responses.retrieve(created.id).status != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    replay = list(sdk.responses.retrieve(created.id, stream=True, starting_after=4))
    assert replay[0].sequence_number == 5
    assert replay[-1].type == "response.completed"


def test_only_background_responses_stream_on_retrieve(echo_url: str) -> None:
    sdk = client(echo_url)
    created = sdk.responses.create(model="echo", input="plain")
    with pytest.raises(openai.BadRequestError) as caught:
        list(sdk.responses.retrieve(created.id, stream=True))
    assert caught.value.body["param"] == "stream"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="echo", input="x", background=True, store=False)
    assert caught.value.body["param"] == "background"  # type: ignore[index]


def test_cancel_stops_a_running_background_response_within_a_step() -> None:
    backend = EndlessBackend(delay=0.01)
    with running_server(create_app(backend, playground=False)) as base:
        sdk = client(base)
        created = sdk.responses.create(model="echo", input="go", background=True)
        deadline = time.monotonic() + 5
        while not sdk.responses.retrieve(created.id).output_text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cancelled = sdk.responses.cancel(created.id)
        assert cancelled.status == "cancelled"
        assert backend.closed == backend.started == 1  # the generator was closed
        so_far = cancelled.output_text
        time.sleep(0.1)
        retrieved = sdk.responses.retrieve(created.id)
        assert retrieved.status == "cancelled" and retrieved.output_text == so_far
        # Its stream ends with the cancelled response, so readers see an end.
        events = list(sdk.responses.retrieve(created.id, stream=True))
        assert events[-1].type == "response.completed"
        assert events[-1].response.status == "cancelled"
        for refused in (
            created.id,
            sdk.responses.create(model="echo", input="x", max_output_tokens=2).id,
        ):
            with pytest.raises(openai.BadRequestError):
                sdk.responses.cancel(refused)


def test_store_off_refuses_background_and_serves_no_ids() -> None:
    with running_server(create_app(EchoBackend(), playground=False, responses=None)) as base:
        sdk = client(base)
        assert sdk.responses.create(model="echo", input="still served").output_text
        with pytest.raises(openai.BadRequestError):
            sdk.responses.create(model="echo", input="x", background=True)
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.responses.create(model="echo", input="x", previous_response_id="resp_any")
        assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            sdk.responses.retrieve("resp_any")


def _ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/v1/responses"


def test_websocket_mode_response_create_streams_and_stores(echo_url: str) -> None:
    with connect(_ws_url(echo_url)) as socket:
        socket.send(json.dumps({"type": "response.create", "model": "echo", "input": "over ws"}))
        documents: list[dict[str, Any]] = []
        while not documents or documents[-1]["type"] != "response.completed":
            documents.append(json.loads(socket.recv(timeout=10)))
    check_stream(documents)
    response = documents[-1]["response"]
    assert client(echo_url).responses.retrieve(response["id"]).output_text == "over ws"


def test_websocket_response_cancel_stops_it_and_background_is_refused() -> None:
    backend = EndlessBackend(delay=0.01)
    with (
        running_server(create_app(backend, playground=False)) as base,
        connect(_ws_url(base)) as socket,
    ):
        socket.send(json.dumps({"type": "response.create", "model": "echo", "input": "go"}))
        for _ in range(5):
            socket.recv(timeout=10)
        socket.send(json.dumps({"type": "response.cancel"}))
        while json.loads(socket.recv(timeout=10)).get("type") != "cancelled":
            pass
        assert backend.closed == 1
        socket.send(
            json.dumps(
                {"type": "response.create", "model": "echo", "input": "x", "background": True}
            )
        )
        error = json.loads(socket.recv(timeout=10))
        assert error["error"]["param"] == "background"


def test_ndjson_background_stream_resumes_by_starting_after(echo_url: str) -> None:
    body = {"model": "echo", "input": WORDS, "background": True, "stream": True}
    headers = {"accept": "application/x-ndjson"}
    with httpx.stream("POST", f"{echo_url}/v1/responses", json=body, headers=headers) as reply:
        lines = reply.iter_lines()
        first = [json.loads(next(lines)) for _ in range(4)]
    response_id = first[0]["response"]["id"]
    rest = list(client(echo_url).responses.retrieve(response_id, stream=True, starting_after=3))
    numbers = [d["sequence_number"] for d in first] + [e.sequence_number for e in rest]
    assert numbers == list(range(len(numbers)))
    assert rest[-1].response.output_text == WORDS  # type: ignore[union-attr]
