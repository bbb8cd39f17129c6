"""Stored Responses-API responses with `--stream-store redis://`: created on one replica,
retrieved, continued with `previous_response_id` and deleted through a round-robin HAProxy
that lands each request on another replica (3 replicas sharing a real redis-server)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests._support.scaleout import Cluster, running_cluster

TIMEOUT = httpx.Timeout(10.0)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    args = [
        "--backend", "echo", "--backend-option", "delay=0.001", "--resume-grace", "5",
        "--middleware", "cancellation",
    ]  # fmt: skip
    with running_cluster(args) as running:
        yield running


def output_text(response: dict[str, object]) -> str:
    text = ""
    for item in response["output"]:  # type: ignore[attr-defined]
        if item["type"] == "message":
            text += "".join(part["text"] for part in item["content"])
    return text


def test_a_stored_response_is_retrieved_and_continued_on_every_replica(cluster: Cluster) -> None:
    first, *others = cluster.replicas
    created = httpx.post(
        f"{first.url}/v1/responses",
        json={"model": "echo", "input": "alpha beta gamma"},
        timeout=TIMEOUT,
    )
    assert created.status_code == 200, created.text
    response_id = created.json()["id"]
    # Each replica answers the GET (not only the one that stored it).
    for replica in others:
        got = httpx.get(f"{replica.url}/v1/responses/{response_id}", timeout=TIMEOUT)
        assert got.status_code == 200, got.text
        assert got.json() == created.json()
    # Continued through the balancer: three requests land on three replicas. The echo
    # backend repeats the last user turn, and the prompt holds the earlier turns: the
    # conversation arrived wherever the request landed.
    for n in range(3):
        follow = httpx.post(
            f"{cluster.url}/v1/responses",
            json={"model": "echo", "input": f"delta {n}", "previous_response_id": response_id},
            timeout=TIMEOUT,
        )
        assert follow.status_code == 200, follow.text
        assert output_text(follow.json()) == f"delta {n}"
        usage = follow.json()["usage"]
        alone = httpx.post(
            f"{cluster.url}/v1/responses",
            json={"model": "echo", "input": f"delta {n}"},
            timeout=TIMEOUT,
        ).json()["usage"]
        assert usage["input_tokens"] > alone["input_tokens"]  # the earlier turns came along


def test_a_streamed_response_is_retrievable_elsewhere_once_its_last_event_arrived(
    cluster: Cluster,
) -> None:
    first, second, _ = cluster.replicas
    for n in range(10):
        body = {"model": "echo", "input": f"streamed {n}", "stream": True}
        with httpx.stream(
            "POST", f"{first.url}/v1/responses", json=body, timeout=TIMEOUT
        ) as streamed:
            text = "".join(streamed.iter_text())
        assert "response.completed" in text
        response_id = text.split('"id":"', 1)[1].split('"', 1)[0]
        # Asked at once on another replica: the write landed before the last event went out.
        got = httpx.get(f"{second.url}/v1/responses/{response_id}", timeout=TIMEOUT)
        assert got.status_code == 200, got.text
        assert got.json()["status"] == "completed"


def test_a_delete_on_one_replica_removes_it_from_all(cluster: Cluster) -> None:
    first, second, third = cluster.replicas
    created = httpx.post(
        f"{first.url}/v1/responses", json={"model": "echo", "input": "to delete"}, timeout=TIMEOUT
    )
    response_id = created.json()["id"]
    assert httpx.get(f"{third.url}/v1/responses/{response_id}", timeout=TIMEOUT).is_success
    deleted = httpx.delete(f"{second.url}/v1/responses/{response_id}", timeout=TIMEOUT)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": response_id, "object": "response", "deleted": True}
    for replica in cluster.replicas:  # the one that stored it and one that had read it too
        gone = httpx.get(f"{replica.url}/v1/responses/{response_id}", timeout=TIMEOUT)
        assert gone.status_code == 404, gone.text
        assert gone.json()["error"]["param"] == "response_id"
    continued = httpx.post(
        f"{first.url}/v1/responses",
        json={"model": "echo", "input": "x", "previous_response_id": response_id},
        timeout=TIMEOUT,
    )
    assert continued.status_code == 404
    assert continued.json()["error"]["param"] == "previous_response_id"


def _background(base: str, text: str) -> tuple[str, str]:
    """A background response started on `base`: (response id, request id)."""
    reply = httpx.post(
        f"{base}/v1/responses",
        json={"model": "echo", "input": text, "background": True},
        timeout=TIMEOUT,
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["id"]), reply.headers["x-request-id"]


LONG = " ".join(f"x{i}" for i in range(5000))  # runs for seconds at the echo's pace


def test_a_background_response_is_cancelled_from_another_replica(cluster: Cluster) -> None:
    owner, other, third = cluster.replicas
    response_id, _ = _background(owner.url, LONG)
    # Stored as queued before the reply: another replica knows it at once.
    assert httpx.get(f"{third.url}/v1/responses/{response_id}", timeout=TIMEOUT).json()[
        "status"
    ] in ("queued", "in_progress")
    cancelled = httpx.post(f"{other.url}/v1/responses/{response_id}/cancel", timeout=TIMEOUT)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    for replica in cluster.replicas:
        got = httpx.get(f"{replica.url}/v1/responses/{response_id}", timeout=TIMEOUT).json()
        assert got["status"] == "cancelled"
        assert len(output_text(got)) < len(LONG)


def test_a_running_background_response_deleted_elsewhere_stays_deleted(cluster: Cluster) -> None:
    owner, other, _ = cluster.replicas
    response_id, request_id = _background(owner.url, LONG)
    deleted = httpx.delete(f"{other.url}/v1/responses/{response_id}", timeout=TIMEOUT)
    assert deleted.status_code == 200, deleted.text
    # Read its stream to the end: had its owner not stopped it, it would store it again then.
    with httpx.Client(timeout=httpx.Timeout(60.0)) as client:
        ended = client.get(f"{owner.url}/v1/streams/{request_id}").text
    assert '"cancelled"' in ended.rstrip().split("\n\n")[-1]
    for replica in cluster.replicas:
        gone = httpx.get(f"{replica.url}/v1/responses/{response_id}", timeout=TIMEOUT)
        assert gone.status_code == 404, gone.text
