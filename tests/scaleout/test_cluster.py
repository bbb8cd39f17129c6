"""Three `tokenwire serve` replicas behind a round-robin HAProxy (no stickiness), sharing a real
redis-server: a reconnect lands on another replica and loses nothing, a cancel reaches the
owner from any replica, and a Redis restart fails no stream."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._support.asgi import sse_events
from tests._support.scaleout import Cluster, running_cluster

WORDS = [f" w{i}" for i in range(30)]
PROMPT = "".join(WORDS).strip()
TIMEOUT = httpx.Timeout(10.0)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    args = [
        "--backend", "echo", "--backend-option", "delay=0.004", "--resume-grace", "3",
        "--middleware", "metrics", "--middleware", "cancellation",
    ]  # fmt: skip
    with running_cluster(args) as running:
        yield running


DIALECTS = {
    "openai": ("/v1/chat/completions", {"model": "echo", "stream": True}),
    "anthropic": ("/v1/messages", {"model": "echo", "stream": True, "max_tokens": 1000}),
}


def body(dialect: str, prompt: str = PROMPT) -> dict[str, object]:
    return {**DIALECTS[dialect][1], "messages": [{"role": "user", "content": prompt}]}


class Events:
    """SSE events (those with ids) read off a live response, in as many pulls as wanted."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.iter_text()
        self.buffer = ""

    def take(self, limit: int | None) -> list[dict[str, str]]:
        events: list[dict[str, str]] = []
        for text in self.chunks:
            self.buffer += text
            while "\n\n" in self.buffer:
                block, self.buffer = self.buffer.split("\n\n", 1)
                events.extend(e for e in sse_events((block + "\n\n").encode()) if "id" in e)
                if limit is not None and len(events) >= limit:
                    return events
        return events


def read(response: httpx.Response, limit: int | None) -> list[dict[str, str]]:
    return Events(response).take(limit)


def ended(events: list[dict[str, str]]) -> bool:
    last = events[-1] if events else {}
    return last.get("data") == "[DONE]" or last.get("event") == "message_stop"


def text_of(events: list[dict[str, str]]) -> str:
    text = ""
    for event in events:
        if not event.get("data", "").startswith("{"):
            continue
        data = json.loads(event["data"])
        for choice in data.get("choices", []):
            text += choice["delta"].get("content") or ""
        if data.get("type") == "content_block_delta":
            text += data["delta"].get("text", "")
    return text


def drop_and_resume(url: str, dialect: str, seed: int) -> None:
    rng = random.Random(seed)
    request_id = f"{dialect}-{seed}-{time.monotonic_ns()}"
    path = DIALECTS[dialect][0]
    with httpx.Client(timeout=TIMEOUT) as client:
        with client.stream(
            "POST", url + path, json=body(dialect), headers={"x-request-id": request_id}
        ) as response:
            assert response.status_code == 200
            events = read(response, rng.randint(1, 20))
        reconnects = 0
        while not ended(events):
            reconnects += 1
            assert reconnects < 60
            headers = {"last-event-id": events[-1]["id"]}
            if rng.random() < 0.5:  # both ways of reconnecting
                stream = client.stream("GET", f"{url}/v1/streams/{request_id}", headers=headers)
            else:
                stream = client.stream("POST", url + path, json=body(dialect), headers=headers)
            with stream as response:
                assert response.status_code == 200, response.read()
                events += read(response, rng.randint(1, 20))
    ids = [e["id"] for e in events]
    assert ids == [f"{request_id}:{n}" for n in range(len(events))]  # none lost, none twice
    assert text_of(events) == PROMPT if dialect == "openai" else text_of(events).strip() == PROMPT


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_reconnects_through_the_balancer_lose_and_repeat_nothing(
    cluster: Cluster, dialect: str
) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda seed: drop_and_resume(cluster.url, dialect, seed), range(50)))


def metric(cluster: Cluster, name: str, **labels: str) -> float:
    total = 0.0
    for replica in cluster.replicas:
        text = httpx.get(f"{replica.url}/metrics", timeout=TIMEOUT).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
    return total


def test_a_cancel_on_any_replica_stops_the_owner_once(cluster: Cluster) -> None:
    cancelled_before = metric(cluster, "tokenwire_requests_total", reason="cancelled")
    long_prompt = " ".join(f"x{i}" for i in range(3000))
    request_id = f"cancel-{time.monotonic_ns()}"
    owner, other = cluster.replicas[0], cluster.replicas[1]
    with httpx.Client(timeout=TIMEOUT) as client, client.stream(
        "POST", owner.url + "/v1/chat/completions", json=body("openai", long_prompt),
        headers={"x-request-id": request_id},
    ) as response:  # fmt: skip
        stream = Events(response)
        events = stream.take(5)
        answer = client.delete(f"{other.url}/v1/requests/{request_id}")  # not the owner
        assert answer.status_code == 200, answer.text
        after = stream.take(None)
    # The owner acked before the DELETE answered: what follows was already on its way.
    assert len(after) < 60, len(after)
    events += after
    # OpenAI has no "cancelled" finish reason: the stream ends early, the metric tells why.
    assert ended(events)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        counted = metric(cluster, "tokenwire_requests_total", reason="cancelled") - cancelled_before
        if counted:
            break
        time.sleep(0.1)
    assert counted == 1
    for _ in range(3):  # through the balancer, each replica once
        unknown = httpx.delete(f"{cluster.url}/v1/requests/nobody-{time.monotonic_ns()}")
        assert unknown.status_code == 404


def test_a_redis_restart_fails_no_stream_and_resume_comes_back(cluster: Cluster) -> None:
    errors_before = metric(cluster, "tokenwire_stream_store_errors_total")
    long_prompt = " ".join(f"y{i}" for i in range(400))

    def whole_stream(n: int) -> tuple[int, str]:
        with httpx.Client(timeout=TIMEOUT) as client, client.stream(
            "POST", cluster.url + "/v1/chat/completions", json=body("openai", long_prompt),
            headers={"x-request-id": f"restart-{n}-{time.monotonic_ns()}"},
        ) as response:  # fmt: skip
            return response.status_code, text_of(read(response, None))

    with ThreadPoolExecutor(6) as pool:
        running = [pool.submit(whole_stream, n) for n in range(6)]
        time.sleep(0.3)
        cluster.redis.restart(down_seconds=1.0)
        started_while_down = [pool.submit(whole_stream, n) for n in range(6, 9)]
        results = [f.result(timeout=60) for f in running + started_while_down]
    assert all(status == 200 and text == long_prompt for status, text in results)
    assert metric(cluster, "tokenwire_stream_store_errors_total") > errors_before
    time.sleep(1.0)  # the replicas' clients reconnect on their next command
    for seed in range(5):
        drop_and_resume(cluster.url, "openai", 1000 + seed)
