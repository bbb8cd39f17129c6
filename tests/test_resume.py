"""Resumable SSE streams against a real server: drop, reconnect with Last-Event-ID, lose nothing."""

import json
import random
import re
import time

import httpx
import pytest

from tests._support.asgi import sse_events
from tests._support.backends import QueuedBackend, ScriptedBackend
from tests._support.server import running_server
from tokenwire import ResumeConfig, create_app

WORDS = [f" w{i}" for i in range(120)]


def chat(model: str = "scripted") -> dict[str, object]:
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": "x"}]}


def read_events(response: httpx.Response, limit: int | None = None) -> list[dict[str, str]]:
    """Read SSE events off a live response, stopping after `limit` events."""
    events: list[dict[str, str]] = []
    buffer = ""
    for text in response.iter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            events.extend(sse_events((block + "\n\n").encode()))
            if limit is not None and len(events) >= limit:
                return events
    return events


def content(events: list[dict[str, str]]) -> str:
    text = ""
    for event in events:
        if event.get("data", "").startswith("{"):
            for choice in json.loads(event["data"]).get("choices", []):
                text += choice["delta"].get("content") or ""
    return text


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend(WORDS, delay=0.01)


@pytest.fixture
def url(backend: ScriptedBackend):  # type: ignore[no-untyped-def]
    app = create_app(backend, resume=ResumeConfig(grace_seconds=0.5))
    with running_server(app) as url:
        yield url


@pytest.mark.parametrize("seed", range(6))
def test_reconnecting_after_random_drops_loses_and_repeats_nothing(url: str, seed: int) -> None:
    rng = random.Random(seed)
    request_id = f"resume-{seed}"
    events: list[dict[str, str]] = []
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=chat(), headers={"x-request-id": request_id}
    ) as response:
        events += read_events(response, limit=rng.randint(1, 40))
    while events[-1].get("data") != "[DONE]":
        headers = {"last-event-id": events[-1]["id"]}
        if rng.random() < 0.5:  # both ways of reconnecting
            stream = httpx.stream("GET", f"{url}/v1/streams/{request_id}", headers=headers)
        else:
            stream = httpx.stream(
                "POST", f"{url}/v1/chat/completions", json=chat(), headers=headers
            )
        with stream as response:
            assert response.status_code == 200
            events += read_events(response, limit=rng.randint(1, 40))
    ids = [int(e["id"].rsplit(":", 1)[1]) for e in events]
    assert ids == list(range(len(events)))
    assert content(events) == "".join(WORDS)


def test_generation_goes_on_while_the_client_is_away(url: str, backend: ScriptedBackend) -> None:
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=chat(), headers={"x-request-id": "away"}
    ) as r:
        first = read_events(r, limit=3)
    time.sleep(0.3)  # within the grace period
    with httpx.stream(
        "GET", f"{url}/v1/streams/away", headers={"last-event-id": first[-1]["id"]}
    ) as r:
        rest = read_events(r)
    assert content(first + rest) == "".join(WORDS)
    assert backend.finished_normally == 1


def test_expiry_of_the_grace_period_cancels_the_stream(url: str, backend: ScriptedBackend) -> None:
    slow = ScriptedBackend(WORDS, delay=0.05)
    app = create_app(slow, resume=ResumeConfig(grace_seconds=0.2))
    with running_server(app) as slow_url:
        with httpx.stream(
            "POST", f"{slow_url}/v1/chat/completions", json=chat(), headers={"x-request-id": "gone"}
        ) as r:
            events = read_events(r, limit=3)
        deadline = time.monotonic() + 3
        while slow.closed_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slow.closed_at is not None
        assert slow.finished_normally == 0
        expired = httpx.get(
            f"{slow_url}/v1/streams/gone", headers={"last-event-id": events[-1]["id"]}
        )
        assert expired.status_code == 404


def test_a_request_dropped_before_its_first_byte_is_cancelled_at_once() -> None:
    slow = ScriptedBackend(WORDS, first_delay=2)
    app = create_app(slow, resume=ResumeConfig(grace_seconds=30))
    with running_server(app) as slow_url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{slow_url}/v1/chat/completions", json=chat(), timeout=0.2)
        deadline = time.monotonic() + 2
        while slow.closed_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slow.closed_at is not None and slow.finished_normally == 0


def test_ndjson_streams_are_not_resumable(url: str, backend: ScriptedBackend) -> None:
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json=chat(),
        headers={"accept": "application/x-ndjson", "x-request-id": "nd"},
    ) as r:
        next(r.iter_lines())
    assert httpx.get(f"{url}/v1/streams/nd").status_code == 404


def test_bad_last_event_id_is_a_400_in_dialect_shape(url: str) -> None:
    reply = httpx.post(
        f"{url}/v1/chat/completions", json=chat(), headers={"last-event-id": "garbage"}
    )
    assert reply.status_code == 400
    assert "Last-Event-ID" in reply.json()["error"]["message"]
    unknown = httpx.post(
        f"{url}/v1/chat/completions", json=chat(), headers={"last-event-id": "nope:3"}
    )
    assert unknown.status_code == 404


def test_a_resumed_post_is_logged_under_the_streams_own_id(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tokenwire.access")
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=chat(), headers={"x-request-id": "logged"}
    ) as response:
        first = read_events(response, limit=2)
    headers = {"last-event-id": first[-1]["id"]}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat(), headers=headers) as r:
        assert r.headers["x-request-id"] == "logged"
        read_events(r)
    with httpx.stream("GET", f"{url}/v1/streams/logged", headers=headers) as r:
        assert r.status_code == 200
        read_events(r)

    def access_lines() -> list[tuple[str, str]]:
        return [
            (record.request_id, record.getMessage())  # type: ignore[attr-defined]
            for record in caplog.records
            if record.name == "tokenwire.access"
        ]

    # The server writes its access line after the last byte leaves, so a client that has read
    # to the end can still be ahead of it by a scheduling slice.
    deadline = time.monotonic() + 5.0
    while len(access_lines()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = access_lines()
    assert [rid for rid, _ in lines] == ["logged", "logged", "logged"]
    assert lines[2][1].startswith("GET /v1/streams/logged 200")


def test_a_resumed_tool_call_stream_replays_byte_for_byte() -> None:
    """Tool-call fragments are payloads like any other: a reconnect mid-call gets exactly the
    bytes an unbroken stream would have carried."""
    from tests._support.backends import EventScriptBackend
    from tokenwire import Finish, TokenDelta, ToolCallDelta, Usage

    arguments = ['{"city": ', '"Par', 'is", ', '"unit": ', '"celsius"}']
    events = [
        TokenDelta("Checking."),
        ToolCallDelta(0, id="call_x", name="get_weather"),
        *(ToolCallDelta(0, arguments=part) for part in arguments),
        Finish("tool_calls", Usage(5, 8)),
    ]
    body = {
        **chat(),
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
    }

    def raw(app_url: str, request_id: str, drop_after: int | None) -> bytes:
        received = b""
        with httpx.stream(
            "POST", f"{app_url}/v1/chat/completions", json=body,
            headers={"x-request-id": request_id},
        ) as response:  # fmt: skip
            for chunk in response.iter_raw():
                received += chunk
                if drop_after is not None and received.count(b"\n\n") >= drop_after:
                    break
        if drop_after is None:
            return received
        kept = received[: received.index(b"\n\n", 0) + 2]
        for _ in range(drop_after - 1):
            kept = received[: received.index(b"\n\n", len(kept)) + 2]
        last_id = [line for line in kept.split(b"\n") if line.startswith(b"id: ")][-1][4:]
        with httpx.stream(
            "GET", f"{app_url}/v1/streams/{request_id}",
            headers={"last-event-id": last_id.decode()},
        ) as response:  # fmt: skip
            return kept + response.read()

    app = create_app(EventScriptBackend(events, delay=0.02), resume=ResumeConfig(grace_seconds=2))
    with running_server(app) as app_url:
        whole = raw(app_url, "unbroken", None)
        resumed = raw(app_url, "dropped", 4)
    assert b'"tool_calls"' in whole and whole.count(b"\n\n") > 6

    # The two requests differ only in their ids and, across a second boundary, `created`.
    def same(raw: bytes) -> bytes:
        return re.sub(rb'"created":\d+', b'"created":0', raw.replace(b"dropped", b"unbroken"))

    assert same(resumed) == same(whole)


def queued_app(backend: QueuedBackend, early_headers_after: float | None):  # type: ignore[no-untyped-def]
    return create_app(
        backend,
        resume=ResumeConfig(grace_seconds=3),
        keepalive_seconds=0.1,
        early_headers_after=early_headers_after,
    )


def test_a_stream_dropped_while_queued_after_early_headers_resumes_from_its_start() -> None:
    words = [" a", " b", " c"]
    backend = QueuedBackend(words, queued_for=1.0)
    with running_server(queued_app(backend, early_headers_after=0.05)) as url:
        with httpx.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json=chat("queued"),
            headers={"x-request-id": "q-1"},
        ) as response:
            assert response.status_code == 200
            assert response.headers["x-request-id"] == "q-1"
            assert next(response.iter_bytes()).startswith(b": keep-alive")
        # Dropped while still queued: no payload, no Last-Event-ID, but the client has the id.
        time.sleep(0.2)
        with httpx.stream("GET", f"{url}/v1/streams/q-1") as response:
            assert response.status_code == 200
            events = [e for e in read_events(response) if "data" in e]
    assert content(events) == "".join(words)
    assert [e["id"] for e in events] == [f"q-1:{i}" for i in range(len(events))]
    assert backend.cancelled == 0


def test_a_stream_dropped_while_queued_without_early_headers_is_cancelled_at_once() -> None:
    backend = QueuedBackend([" a"], queued_for=1.0)
    with running_server(queued_app(backend, early_headers_after=None)) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{url}/v1/chat/completions",
                json=chat("queued"),
                headers={"x-request-id": "q-2"},
                timeout=httpx.Timeout(5, read=0.3),
            )
        time.sleep(0.2)
        assert httpx.get(f"{url}/v1/streams/q-2").status_code == 404
    assert backend.cancelled == 1
