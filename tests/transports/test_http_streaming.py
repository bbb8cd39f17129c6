import json

import pytest

from tests._support.asgi import call_http, sse_events
from tests._support.backends import ScriptedBackend, queue_full_backend
from tests._support.dialect import PlainDialect
from tokenwire import create_app
from tokenwire.limits import Limits

pytestmark = pytest.mark.anyio


def app_for(backend: ScriptedBackend, **options: object):  # type: ignore[no-untyped-def]
    return create_app(backend, dialects=[PlainDialect()], **options)  # type: ignore[arg-type]


async def test_sse_frames_every_payload_with_an_id_as_it_is_produced() -> None:
    backend = ScriptedBackend(["a", " b", " c"], delay=0.05)
    rec = await call_http(
        app_for(backend), "/plain", {"prompt": "x"}, headers={"x-request-id": "abc-1"}
    )
    assert rec.status == 200
    assert rec.headers["content-type"].startswith("text/event-stream")
    assert rec.headers["cache-control"] == "no-cache"
    assert rec.headers["x-accel-buffering"] == "no"
    assert rec.headers["x-request-id"] == "abc-1"
    events = sse_events(rec.body)
    assert [e.get("event") for e in events] == ["open", "delta", "delta", "delta", "finish", None]
    assert [e.get("id") for e in events] == [f"abc-1:{i}" for i in range(len(events))]
    assert [json.loads(e["data"]).get("text") for e in events if e.get("event") == "delta"] == [
        "a",
        " b",
        " c",
    ]
    # Tokens went out one by one, not buffered to the end: the writes are spread over time.
    body_times = [t for t, m in rec.messages if m["type"] == "http.response.body" and m.get("body")]
    assert len(body_times) >= 3
    assert body_times[-1] - body_times[0] >= 0.08
    assert rec.completed


async def test_sse_sentinel_payload_is_sent_as_data() -> None:
    rec = await call_http(app_for(ScriptedBackend(["a"])), "/plain", {"prompt": "x"})
    assert sse_events(rec.body)[-1]["data"] == "[END]"


async def test_failure_before_first_token_is_a_real_http_error_without_internals() -> None:
    rec = await call_http(app_for(ScriptedBackend(["a"], fail_at=0)), "/plain", {"prompt": "x"})
    assert rec.status == 500
    assert rec.headers["content-type"] == "application/json"
    assert rec.json()["error"]["kind"] == "internal_error"
    assert "secret" not in rec.body.decode()


async def test_queue_full_before_first_token_is_429_with_retry_after() -> None:
    rec = await call_http(app_for(queue_full_backend()), "/plain", {"prompt": "x"})
    assert rec.status == 429
    assert rec.headers["retry-after"] == "2"


async def test_failure_after_first_token_is_in_band_then_a_clean_close() -> None:
    rec = await call_http(
        app_for(ScriptedBackend(["a", "b", "c"], fail_at=2)), "/plain", {"prompt": "x"}
    )
    assert rec.status == 200
    events = sse_events(rec.body)
    assert [e["event"] for e in events] == ["open", "delta", "delta", "error"]
    assert "secret" not in rec.body.decode()
    assert rec.completed


async def test_invalid_body_is_400_in_dialect_shape() -> None:
    rec = await call_http(app_for(ScriptedBackend(["a"])), "/plain", b"{not json")
    assert rec.status == 400
    assert rec.json()["error"]["kind"] == "invalid_request"


async def test_deeply_nested_json_is_400_not_500() -> None:
    rec = await call_http(
        app_for(ScriptedBackend(["a"])), "/plain", b"[" * 100_000 + b"]" * 100_000
    )
    assert rec.status == 400


async def test_oversized_body_is_413() -> None:
    app = app_for(ScriptedBackend(["a"]), limits=Limits(max_body_bytes=100))
    rec = await call_http(app, "/plain", {"prompt": "x" * 200})
    assert rec.status == 413


async def test_non_streamed_request_gets_one_json_response() -> None:
    rec = await call_http(
        app_for(ScriptedBackend(["a", " b"])), "/plain", {"prompt": "x", "stream": False}
    )
    assert rec.status == 200
    assert rec.json() == {"text": "a b", "reason": "stop"}


async def test_client_disconnect_closes_the_backend_generator_within_100ms() -> None:
    backend = ScriptedBackend([f" w{i}" for i in range(100)], delay=0.02)
    disconnected_at: list[float] = []

    def after_three_deltas(rec) -> bool:  # type: ignore[no-untyped-def]
        if len(rec.chunks) >= 4 and not disconnected_at:
            import anyio

            disconnected_at.append(anyio.current_time())
            return True
        return False

    await call_http(app_for(backend), "/plain", {"prompt": "x"}, disconnect_when=after_three_deltas)
    assert backend.finished_normally == 0
    assert backend.closed_at is not None
    assert backend.closed_at - disconnected_at[0] < 0.1


async def test_disconnect_while_waiting_for_first_token_cancels_too() -> None:
    backend = ScriptedBackend(["a"], first_delay=5)
    rec = await call_http(
        app_for(backend), "/plain", {"prompt": "x"}, disconnect_after=0.1, timeout=1
    )
    assert backend.closed_at is not None
    assert backend.finished_normally == 0
    assert not [m for _, m in rec.messages if m["type"] == "http.response.start"]


async def test_sse_sends_keepalive_comments_while_idle() -> None:
    backend = ScriptedBackend(["a", "b"], delay=0.35)
    rec = await call_http(app_for(backend, keepalive_seconds=0.1), "/plain", {"prompt": "x"})
    comments = [e for e in sse_events(rec.body) if "comment" in e]
    assert len(comments) >= 2
    assert comments[0]["comment"] == "keep-alive"


async def test_ndjson_when_the_client_asks_for_it() -> None:
    rec = await call_http(
        app_for(ScriptedBackend(["a", " b"])),
        "/plain",
        {"prompt": "x"},
        headers={"accept": "application/x-ndjson"},
    )
    assert rec.headers["content-type"] == "application/x-ndjson"
    lines = rec.body.decode().splitlines()
    # Every line is one JSON payload; the non-JSON end marker is left out.
    assert [json.loads(line)["type"] for line in lines] == ["open", "delta", "delta", "finish"]
