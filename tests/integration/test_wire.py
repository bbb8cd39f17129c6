"""Raw-wire checks against a real server: what SDKs tolerate but the spec requires."""

import json
import time

import httpx
import pytest
from websockets.sync.client import connect

from tests._support.asgi import sse_events
from tests._support.backends import ScriptedBackend

CHAT = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "one two three"}]}


def test_openai_sse_ends_with_done_and_every_event_has_an_id(echo_url: str) -> None:
    response = httpx.post(
        f"{echo_url}/v1/chat/completions", json=CHAT, headers={"x-request-id": "r1"}
    )
    events = sse_events(response.content)
    assert events[-1]["data"] == "[DONE]"
    assert [e["id"] for e in events] == [f"r1:{i}" for i in range(len(events))]
    assert response.headers["x-request-id"] == "r1"
    assert "content-encoding" not in response.headers


def test_anthropic_sse_names_every_event_and_ends_with_message_stop(echo_url: str) -> None:
    body = {
        "model": "echo",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "a b"}],
    }
    response = httpx.post(f"{echo_url}/v1/messages", json=body)
    names = [e["event"] for e in sse_events(response.content)]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") == 2


def test_gemini_sse_carries_only_data_lines(echo_url: str) -> None:
    response = httpx.post(
        f"{echo_url}/v1beta/models/echo:streamGenerateContent?alt=sse",
        json={"contents": [{"role": "user", "parts": [{"text": "a b"}]}]},
    )
    lines = [line for line in response.text.split("\n") if line]
    assert lines and all(line.startswith("data: ") for line in lines)


def test_ndjson_streams_one_payload_per_line(echo_url: str) -> None:
    with httpx.stream(
        "POST",
        f"{echo_url}/v1/chat/completions",
        json=CHAT,
        headers={"accept": "application/x-ndjson"},
    ) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = list(response.iter_lines())
    payloads = [json.loads(line) for line in lines if line]
    text = "".join(p["choices"][0]["delta"].get("content", "") for p in payloads if p["choices"])
    assert text == "one two three"


def test_websocket_on_the_same_path_runs_requests_in_turn(echo_url: str) -> None:
    ws_url = echo_url.replace("http://", "ws://") + "/v1/chat/completions"
    with connect(ws_url) as ws:
        for _ in range(2):
            ws.send(json.dumps(CHAT))
            frames = []
            while (frame := ws.recv()) != "[DONE]":
                frames.append(json.loads(frame))
            text = "".join(
                f["choices"][0]["delta"].get("content", "") for f in frames if f["choices"]
            )
            assert text == "one two three"


def test_http_disconnect_mid_stream_closes_the_backend_generator_within_100ms(
    slow_url: str, slow_backend: ScriptedBackend
) -> None:
    body = {**CHAT, "model": "scripted"}
    with httpx.stream("POST", f"{slow_url}/v1/chat/completions", json=body) as response:
        for count, _ in enumerate(response.iter_lines()):
            if count > 10:
                break
    disconnected_at = time.monotonic()  # the socket is closed on leaving the block
    while slow_backend.closed_at is None and time.monotonic() < disconnected_at + 2:
        time.sleep(0.005)
    assert slow_backend.closed_at is not None
    assert slow_backend.finished_normally == 0
    # anyio's clock on asyncio is the monotonic clock, so the two times compare.
    assert slow_backend.closed_at - disconnected_at < 0.1


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/chat/completions", b"{bad json", 400),
        ("/v1/chat/completions", {"model": "echo", "messages": "hi"}, 400),
        ("/v1/chat/completions", {"model": "echo"}, 400),
        (
            "/v1/chat/completions",
            {"model": "echo", "messages": [{"role": [], "content": "x"}]},
            400,
        ),
        (
            "/v1/chat/completions",
            {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
            404,
        ),
        (
            "/v1/chat/completions",
            {"model": "echo", "n": 3, "messages": [{"role": "user", "content": "x"}]},
            400,
        ),
        (
            "/v1/chat/completions",
            {"model": "echo", "max_tokens": -5, "messages": [{"role": "user", "content": "x"}]},
            400,
        ),
        (
            "/v1/chat/completions",
            {"model": "echo", "max_tokens": 10**12, "messages": [{"role": "user", "content": "x"}]},
            400,
        ),
        ("/v1/completions", {"model": "echo", "prompt": 5}, 400),
        ("/v1/chat/completions", b"[" * 50_000, 400),
    ],
)
def test_openai_bad_input_is_a_4xx_in_openai_shape(
    echo_url: str, path: str, body: object, status: int
) -> None:
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = httpx.post(f"{echo_url}{path}", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["type"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "echo", "messages": [{"role": "user", "content": "x"}]},  # max_tokens missing
        {"model": "echo", "max_tokens": "ten", "messages": [{"role": "user", "content": "x"}]},
        {"model": "echo", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]},
    ],
)
def test_anthropic_bad_input_is_a_400_in_anthropic_shape(echo_url: str, body: object) -> None:
    response = httpx.post(f"{echo_url}/v1/messages", json=body)
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1beta/models/echo:streamGenerateContent", {"contents": "nope"}, 400),
        ("/v1beta/models/echo:explode", {"contents": [{"parts": [{"text": "x"}]}]}, 404),
        (
            "/v1beta/models/other/model:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}]},
            404,
        ),
    ],
)
def test_gemini_bad_input_is_a_4xx_in_gemini_shape(
    echo_url: str, path: str, body: object, status: int
) -> None:
    response = httpx.post(f"{echo_url}{path}", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == status


def test_oversized_body_is_413(echo_url: str) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
    response = httpx.post(f"{echo_url}/v1/chat/completions", json=body)
    assert response.status_code == 413
    assert "error" in response.json()


def test_health_endpoints(echo_url: str) -> None:
    assert httpx.get(f"{echo_url}/health/live").status_code == 200
    ready = httpx.get(f"{echo_url}/health/ready")
    assert ready.status_code == 200 and ready.json()["model"] == "echo"


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/chat/completions", lambda body: body["error"]["type"]),
        ("/v1/messages", lambda body: body["error"]["type"] and body["type"] == "error"),
        ("/v1beta/models/echo:generateContent", lambda body: body["error"]["status"]),
    ],
)
def test_wrong_method_is_a_405_in_dialect_shape(echo_url: str, path: str, shape) -> None:  # type: ignore[no-untyped-def]
    reply = httpx.get(f"{echo_url}{path}")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "POST"
    assert shape(reply.json())


def test_unknown_path_is_a_json_404_in_openai_shape_with_a_request_id(echo_url: str) -> None:
    reply = httpx.get(f"{echo_url}/v2/nothing", headers={"x-request-id": "trace-404"})
    assert reply.status_code == 404
    # Routes no dialect owns speak the first dialect's (OpenAI's) vocabulary, as OpenAI does.
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] is None
    assert "/v2/nothing" in error["message"]
    assert reply.headers["x-request-id"] == "trace-404"


def test_a_method_a_route_does_not_take_is_a_405_in_openai_shape(echo_url: str) -> None:
    reply = httpx.post(f"{echo_url}/v1/models")
    assert reply.status_code == 405
    assert set(reply.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert reply.headers["x-request-id"].startswith("req_")


def test_models_and_health_carry_a_request_id(echo_url: str) -> None:
    for path in ("/v1/models", "/v1/models/nope", "/health/live"):
        reply = httpx.get(f"{echo_url}{path}", headers={"x-request-id": "trace-m"})
        assert reply.headers["x-request-id"] == "trace-m", path
    unknown = httpx.get(f"{echo_url}/v1/models/nope").json()["error"]
    assert unknown["code"] == "model_not_found" and unknown["param"] == "model"


def test_an_unmatched_path_under_a_dialects_prefix_gets_its_error_shape(echo_url: str) -> None:
    # A path parameter never matches a newline, so this Gemini path matches no route.
    reply = httpx.post(f"{echo_url}/v1beta/models/a%0Ab:generateContent", json={})
    assert reply.status_code == 404
    assert reply.json()["error"]["status"] == "NOT_FOUND"
