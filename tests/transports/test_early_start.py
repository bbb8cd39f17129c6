"""A stream that is alive before its first token: once the backend admitted a request that
still waits, the response starts with headers and keep-alives in each dialect's own form."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from tests._support.asgi import Recorded, call_http, sse_events
from tests._support.backends import QueuedBackend, ScriptedBackend
from tests._support.dialect import PlainDialect
from tests.transports.test_websocket import Client, scope
from tokenwire import GenerationError, create_app
from tokenwire.interfaces import Backend

pytestmark = pytest.mark.anyio

QUEUED = 0.8  # seconds the backend keeps the request queued
EARLY = 0.1  # early_headers_after in these tests
KEEPALIVE = 0.15  # keepalive_seconds in these tests

CHAT = {"model": "queued", "stream": True, "messages": [{"role": "user", "content": "x"}]}
MESSAGES = {**CHAT, "max_tokens": 16}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
GEMINI_PATH = "/v1beta/models/queued:streamGenerateContent"


def app_for(backend: Backend, **options: Any):  # type: ignore[no-untyped-def]
    options.setdefault("keepalive_seconds", KEEPALIVE)
    options.setdefault("early_headers_after", EARLY)
    return create_app(backend, **options)


def bodies_before(rec: Recorded, marker: bytes) -> list[bytes]:
    """The body chunks written before the first one that holds `marker`."""
    chunks = []
    for chunk in rec.chunks:
        if marker in chunk:
            break
        chunks.append(chunk)
    return chunks


async def timed_call(app: Any, path: str, body: Any, **options: Any) -> tuple[Recorded, float]:
    """`call_http`, and when the call began (the recording's clock)."""
    began = anyio.current_time()
    rec = await call_http(app, path, body, **options)
    return rec, began


async def test_openai_sse_starts_with_headers_and_keepalive_comments_while_queued() -> None:
    rec, began = await timed_call(
        app_for(QueuedBackend(["Hi", " there"], queued_for=QUEUED)),
        "/v1/chat/completions",
        CHAT,
        headers={"x-request-id": "early-1"},
    )
    start = next(t for t, m in rec.messages if m["type"] == "http.response.start")
    assert start - began < QUEUED / 2  # long before the first token
    assert rec.status == 200
    assert rec.headers["x-request-id"] == "early-1"
    assert rec.headers["content-type"].startswith("text/event-stream")
    waiting = bodies_before(rec, b"data:")
    # One right away, then one per keep-alive interval while the request waits.
    assert waiting[0] == b": keep-alive\n\n"
    assert len(waiting) >= 3
    assert set(waiting) == {b": keep-alive\n\n"}
    events = [e for e in sse_events(rec.body) if "data" in e]
    assert events[-1]["data"] == "[DONE]"
    text = "".join(
        json.loads(e["data"])["choices"][0]["delta"].get("content") or ""
        for e in events[:-1]
        if json.loads(e["data"])["choices"]
    )
    assert text == "Hi there"
    # The ids still count payloads from 0: keep-alives carry none.
    assert [e["id"] for e in events] == [f"early-1:{i}" for i in range(len(events))]
    assert rec.completed


async def test_anthropic_sse_pings_while_queued_and_message_start_waits_for_the_first_token() -> (
    None
):
    rec = await call_http(
        app_for(QueuedBackend(["Hi"], queued_for=QUEUED)), "/v1/messages", MESSAGES
    )
    assert rec.status == 200
    waiting = bodies_before(rec, b"message_start")
    assert waiting[0] == b'event: ping\ndata: {"type": "ping"}\n\n'
    assert len(waiting) >= 3
    names = [e.get("event") for e in sse_events(rec.body)]
    first = names.index("message_start")
    assert set(names[:first]) == {"ping"}
    assert names[-1] == "message_stop"


async def test_gemini_sse_never_starts_early_its_clients_read_only_data_lines() -> None:
    rec, began = await timed_call(
        app_for(QueuedBackend(["Hi"], queued_for=QUEUED)), GEMINI_PATH, GEMINI
    )
    start = next(t for t, m in rec.messages if m["type"] == "http.response.start")
    assert start - began >= QUEUED
    assert all(line.startswith(b"data: ") for line in rec.body.split(b"\n") if line)


async def test_ndjson_sends_keepalive_lines_that_parse_as_json() -> None:
    rec = await call_http(
        app_for(QueuedBackend(["Hi"], queued_for=QUEUED)),
        "/v1/chat/completions",
        CHAT,
        headers={"accept": "application/x-ndjson"},
    )
    assert rec.status == 200
    lines = [json.loads(line) for line in rec.body.splitlines()]
    first = next(i for i, line in enumerate(lines) if line.get("object"))
    assert first >= 3
    assert lines[:first] == [{"type": "keepalive"}] * first
    assert lines[-1]["object"] == "chat.completion.chunk"


async def test_websocket_sends_keepalive_messages_while_queued(
    request: pytest.FixtureRequest,
) -> None:
    app = create_app(
        QueuedBackend(["a"], queued_for=QUEUED),
        dialects=[PlainDialect()],
        keepalive_seconds=KEEPALIVE,
        early_headers_after=EARLY,
    )
    client = Client()
    request.addfinalizer(client.close)
    async with anyio.create_task_group() as tg:
        tg.start_soon(app, scope(), client.receive, client.send)
        await client.to_server.send({"type": "websocket.connect"})
        assert (await client.outbox.receive())["type"] == "websocket.accept"
        await client.to_server.send({"type": "websocket.receive", "text": '{"prompt": "x"}'})
        frames = await client.until(lambda f: f == "[END]")
        types = [f["type"] for f in frames[:-1]]
        first = types.index("open")
        assert first >= 3
        assert set(types[:first]) == {"keepalive"}
        assert types[first:] == ["open", "delta", "finish"]
        await client.to_server.send({"type": "websocket.disconnect", "code": 1000})
        tg.cancel_scope.deadline = anyio.current_time() + 2


async def test_a_validation_error_is_still_a_real_400() -> None:
    rec = await call_http(
        app_for(QueuedBackend(["Hi"], queued_for=QUEUED), early_headers_after=0),
        "/v1/chat/completions",
        {**CHAT, "temperature": "hot"},
    )
    assert rec.status == 400
    assert rec.json()["error"]["type"] == "invalid_request_error"


async def test_a_backend_that_refuses_before_admission_still_gets_a_real_status() -> None:
    backend = QueuedBackend(["Hi"], queued_for=QUEUED, reject=GenerationError("no room"))
    rec = await call_http(app_for(backend, early_headers_after=0), "/v1/chat/completions", CHAT)
    assert rec.status == 500
    assert rec.headers["content-type"] == "application/json"


async def test_a_failure_before_admission_wait_ends_is_real_when_no_keepalive_went_out() -> None:
    # Failing while queued but before the delay: the response has not started.
    backend = QueuedBackend(["Hi"], queued_for=0.05, error=GenerationError("it broke"))
    rec = await call_http(app_for(backend, early_headers_after=0.5), "/v1/chat/completions", CHAT)
    assert rec.status == 500
    assert rec.json()["error"]["message"] == "it broke"


@pytest.mark.parametrize(
    ("path", "body", "headers", "check"),
    [
        pytest.param(
            "/v1/chat/completions",
            CHAT,
            {},
            lambda events: (
                json.loads(events[-2]["data"])["error"]["message"] == "it broke"
                and events[-1]["data"] == "[DONE]"
            ),
            id="openai",
        ),
        pytest.param(
            "/v1/messages",
            MESSAGES,
            {},
            lambda events: (
                events[-1]["event"] == "error"
                and json.loads(events[-1]["data"])["error"]["message"] == "it broke"
            ),
            id="anthropic",
        ),
        pytest.param(
            "/v1/chat/completions",
            CHAT,
            {"accept": "application/x-ndjson"},
            lambda lines: lines[-1]["error"]["message"] == "it broke",
            id="ndjson",
        ),
    ],
)
async def test_a_failure_after_early_headers_is_in_band_then_a_clean_end(
    path: str, body: dict[str, Any], headers: dict[str, str], check: Any
) -> None:
    backend = QueuedBackend(["Hi"], queued_for=QUEUED / 2, error=GenerationError("it broke"))
    rec = await call_http(app_for(backend), path, body, headers=headers)
    assert rec.status == 200
    assert rec.completed
    if "ndjson" in headers.get("accept", ""):
        items: list[Any] = [json.loads(line) for line in rec.body.splitlines()]
        assert items[0] == {"type": "keepalive"}
    else:
        items = [e for e in sse_events(rec.body) if "data" in e]
    assert check(items)


async def test_a_quick_first_token_streams_byte_for_byte_as_without_early_headers() -> None:
    async def run(**options: Any) -> Recorded:
        backend = QueuedBackend(["a", " b"], queued_for=0.02, prefill_chunks=2)
        app = create_app(backend, dialects=[PlainDialect()], keepalive_seconds=0.01, **options)
        return await call_http(app, "/plain", {"prompt": "x"}, headers={"x-request-id": "same"})

    with_early = await run(early_headers_after=0.3)
    without = await run(early_headers_after=None)
    assert with_early.status == without.status == 200
    assert with_early.body == without.body
    assert b"keep-alive" not in with_early.body
    assert with_early.chunks[0].startswith(b"id: same:0\nevent: open\n")


async def test_a_backend_that_reports_no_progress_never_starts_early() -> None:
    # Never admitted as far as the transport knows: a late failure is still a real status.
    backend = ScriptedBackend(["a"], first_delay=0.4, fail_at=0)
    app = create_app(backend, dialects=[PlainDialect()], early_headers_after=0)
    rec = await call_http(app, "/plain", {"prompt": "x"})
    assert rec.status == 500


async def test_progress_payloads_count_prefilled_prompt_tokens_when_asked() -> None:
    backend = QueuedBackend(["Hi"], queued_for=0.05, prefill_chunks=4, prompt_tokens=100)
    rec = await call_http(
        app_for(backend, early_headers_after=None),
        "/v1/chat/completions",
        CHAT,
        headers={"x-tokenwire-progress": "1", "x-request-id": "p-1"},
    )
    events = [e for e in sse_events(rec.body) if "data" in e]
    progress = [json.loads(e["data"]) for e in events if e.get("event") == "progress"]
    assert progress == [
        {"type": "progress", "phase": "queued"},
        *(
            {"type": "progress", "phase": "prefill", "done": d, "total": 100}
            for d in (25, 50, 75, 100)
        ),
    ]
    # Numbered like any payload, ahead of the first chunk.
    assert [e["id"] for e in events[:5]] == [f"p-1:{i}" for i in range(5)]
    assert events[5].get("event") is None


async def test_no_progress_payloads_unless_asked() -> None:
    backend = QueuedBackend(["Hi"], queued_for=0.05, prefill_chunks=4)
    rec = await call_http(app_for(backend), "/v1/chat/completions", CHAT)
    assert b"progress" not in rec.body
