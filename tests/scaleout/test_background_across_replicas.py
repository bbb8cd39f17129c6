"""Background responses with the Redis stream store: their events go through the same shared
store as resumable streams, so a replica that does not run one replays it byte for byte, and a
cancel sent to any replica stops it. Two `tokenwire serve` replicas share a real redis-server
(stored responses themselves stay with the replica that created them)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests._support.scaleout import ServeProcess, running_redis

WORDS = " ".join(f"w{i}" for i in range(40))
TIMEOUT = httpx.Timeout(10.0)


@pytest.fixture(scope="module")
def replicas() -> Iterator[tuple[str, str]]:
    with running_redis() as redis_server:
        args = [
            "--backend", "echo", "--backend-option", "delay=0.01", "--resume-grace", "10",
            "--stream-store", redis_server.url, "--middleware", "cancellation",
        ]  # fmt: skip
        processes = [ServeProcess(args) for _ in range(2)]
        try:
            for process in processes:
                process.wait_ready()
            yield processes[0].url, processes[1].url
        finally:
            for process in processes:
                process.stop()


def create_background(base: str, text: str) -> tuple[str, str]:
    """POST a background response; its (response id, request id)."""
    reply = httpx.post(
        f"{base}/v1/responses",
        json={"model": "echo", "input": text, "background": True},
        timeout=TIMEOUT,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["id"], reply.headers["x-request-id"]


def retrieve(base: str, response_id: str) -> dict[str, object]:
    reply = httpx.get(f"{base}/v1/responses/{response_id}", timeout=TIMEOUT)
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def wait_until_not_running(base: str, response_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while (response := retrieve(base, response_id))["status"] in ("queued", "in_progress"):
        assert time.monotonic() < deadline, response
        time.sleep(0.05)
    return response


def test_another_replica_replays_a_background_response_byte_for_byte(
    replicas: tuple[str, str],
) -> None:
    owner, other = replicas
    response_id, request_id = create_background(owner, WORDS)
    assert wait_until_not_running(owner, response_id)["status"] == "completed"
    here = httpx.get(f"{owner}/v1/responses/{response_id}?stream=true", timeout=TIMEOUT)
    there = httpx.get(f"{other}/v1/streams/{request_id}", timeout=TIMEOUT)
    assert there.status_code == 200, there.text
    assert there.content == here.content
    assert b"response.completed" in there.content and WORDS.encode() in there.content
    tail = httpx.get(
        f"{other}/v1/streams/{request_id}",
        headers={"last-event-id": f"{request_id}:4"},
        timeout=TIMEOUT,
    )
    assert f"id: {request_id}:5\n".encode() in tail.content
    assert f"id: {request_id}:4\n".encode() not in tail.content
    assert here.content.endswith(tail.content)


def test_a_cancel_on_another_replica_stops_a_background_response(
    replicas: tuple[str, str],
) -> None:
    owner, other = replicas
    long_text = " ".join(f"x{i}" for i in range(3000))  # 30 s at the echo's pace
    response_id, request_id = create_background(owner, long_text)
    deadline = time.monotonic() + 10
    while not retrieve(owner, response_id)["output"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    answer = httpx.delete(f"{other}/v1/requests/{request_id}", timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    final = wait_until_not_running(owner, response_id)
    assert final["status"] == "cancelled"
    # Its stream ends with the cancelled response, read on either replica.
    replayed = httpx.get(f"{other}/v1/streams/{request_id}", timeout=TIMEOUT).content
    last = replayed.rstrip().split(b"\n\n")[-1]
    assert b"response.completed" in last and b'"cancelled"' in last
    assert len(replayed) < len(long_text)
