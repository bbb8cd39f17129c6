import json
import time
from functools import partial

import anyio
import httpx
import pytest

from tests._support.asgi import call_http, sse_events
from tests._support.backends import ScriptedBackend
from tests._support.server import running_server
from tokenwire import Finish, GenerationRequest, TokenDelta, create_app
from tokenwire.middlewares import CancellationMiddleware, CancelRegistry

CHAT = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "x"}]}


def slow(n: int = 200, delay: float = 0.02) -> ScriptedBackend:
    return ScriptedBackend([f" w{i}" for i in range(n)], delay=delay)


@pytest.mark.anyio
async def test_deadline_from_header_ends_the_stream_with_an_in_band_error() -> None:
    backend = slow()
    app = create_app(backend, middlewares=[CancellationMiddleware])
    rec = await call_http(app, "/v1/chat/completions", CHAT, headers={"x-request-timeout": "0.15"})
    events = sse_events(rec.body)
    assert rec.status == 200
    error = json.loads(events[-2]["data"])["error"]
    assert "deadline" in error["message"]
    assert events[-1]["data"] == "[DONE]"
    assert backend.finished_normally == 0 and backend.closed_at is not None
    assert rec.completed


@pytest.mark.anyio
async def test_deadline_before_first_token_is_a_504_in_dialect_shape() -> None:
    backend = ScriptedBackend(["late"], first_delay=2)
    app = create_app(backend, middlewares=[CancellationMiddleware])
    body = {
        "model": "scripted",
        "max_tokens": 10,
        "stream": True,
        "timeout": 0.1,
        "messages": [{"role": "user", "content": "x"}],
    }
    rec = await call_http(app, "/v1/messages", body)
    assert rec.status == 504
    assert rec.json()["type"] == "error"


@pytest.mark.anyio
async def test_server_cap_bounds_the_deadline_a_client_asks_for() -> None:
    backend = slow()
    app = create_app(backend, middlewares=[partial(CancellationMiddleware, max_timeout=0.1)])
    start = anyio.current_time()
    rec = await call_http(app, "/v1/chat/completions", CHAT, headers={"x-request-timeout": "100"})
    assert anyio.current_time() - start < 1.0
    assert "deadline" in rec.body.decode()


@pytest.mark.anyio
async def test_bad_timeout_is_a_400() -> None:
    app = create_app(slow(), middlewares=[CancellationMiddleware])
    rec = await call_http(app, "/v1/chat/completions", CHAT, headers={"x-request-timeout": "soon"})
    assert rec.status == 400
    assert "x-request-timeout" in rec.json()["error"]["message"]


def test_delete_by_request_id_cancels_a_running_stream_on_a_real_server() -> None:
    backend = slow(n=500)
    registry = CancelRegistry()
    app = create_app(backend, middlewares=[partial(CancellationMiddleware, registry=registry)])
    with running_server(app) as url, httpx.Client(base_url=url) as client:
        with client.stream(
            "POST", "/v1/chat/completions", json=CHAT, headers={"x-request-id": "job-42"}
        ) as response:
            lines = response.iter_lines()
            for _ in range(6):
                next(lines)
            cancelled = httpx.delete(f"{url}/v1/requests/job-42")
            assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
            rest = list(lines)
        payloads = [json.loads(line[6:]) for line in rest if line.startswith("data: {")]
        assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
        assert rest[-2] == "data: [DONE]"
        assert backend.finished_normally == 0
        deadline = time.monotonic() + 1
        while registry.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert registry.running == {}
        assert client.delete("/v1/requests/job-42").status_code == 404


@pytest.mark.anyio
async def test_cancel_between_events_finishes_as_cancelled_with_the_tokens_so_far() -> None:
    registry = CancelRegistry()
    middleware = CancellationMiddleware(slow(n=50, delay=0.01).generate, registry=registry)
    request = GenerationRequest(model="m", prompt="p", request_id="r1")
    events = []
    async for event in middleware(request):
        events.append(event)
        if len(events) == 3:
            assert registry.cancel("r1") == 1
    assert all(isinstance(e, TokenDelta) for e in events[:-1])
    assert events[-1] == Finish("cancelled", events[-1].usage)  # type: ignore[union-attr]
    assert events[-1].usage.completion_tokens == 3  # type: ignore[union-attr]
