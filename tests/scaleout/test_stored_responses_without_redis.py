"""Stored responses while the shared Redis is down: a replica that does not hold a response
cannot say whether it exists, so `GET`, `previous_response_id`, cancel and `DELETE` answer 503
in OpenAI's error shape, not 404; the replica that stored it still serves it; once Redis is
back every replica answers as before. Two replicas share a real redis-server, which is saved,
stopped and started again with its keys (a network blip, not a data loss)."""

from __future__ import annotations

import time

import httpx

from tests._support.scaleout import ServeProcess, running_redis

TIMEOUT = httpx.Timeout(10.0)


def _unavailable(reply: httpx.Response, param: str | None) -> None:
    assert reply.status_code == 503, reply.text
    error = reply.json()["error"]
    assert error["type"] == "server_error"
    assert "unreachable" in error["message"] and "try again" in error["message"]
    assert error["param"] == param


def test_stored_responses_answer_503_on_other_replicas_while_redis_is_down() -> None:
    import redis

    with running_redis() as redis_server:
        args = ["--backend", "echo", "--stream-store", redis_server.url, "--middleware", "metrics"]
        owner, other = ServeProcess(args), ServeProcess(args)
        try:
            owner.wait_ready()
            other.wait_ready()
            created = httpx.post(
                f"{owner.url}/v1/responses",
                json={"model": "echo", "input": "alpha beta"},
                timeout=TIMEOUT,
            )
            assert created.status_code == 200, created.text
            response_id = created.json()["id"]
            url = f"{other.url}/v1/responses/{response_id}"  # never read there: not held
            follow = {"model": "echo", "input": "gamma", "previous_response_id": response_id}

            with redis.Redis.from_url(redis_server.url) as client:
                client.save()  # kept across the restart below
            redis_server.stop()

            _unavailable(httpx.get(url, timeout=TIMEOUT), None)
            unknown = httpx.get(f"{other.url}/v1/responses/resp_never", timeout=TIMEOUT)
            _unavailable(unknown, None)  # a response nobody stored cannot be told apart
            continued = httpx.post(f"{other.url}/v1/responses", json=follow, timeout=TIMEOUT)
            _unavailable(continued, "previous_response_id")
            _unavailable(httpx.post(f"{url}/cancel", timeout=TIMEOUT), None)
            _unavailable(httpx.delete(url, timeout=TIMEOUT), None)
            # The replica that stored it still serves it (and continues from it), but cannot
            # delete it: the delete would not reach the others.
            own = f"{owner.url}/v1/responses/{response_id}"
            assert httpx.get(own, timeout=TIMEOUT).json() == created.json()
            here = httpx.post(f"{owner.url}/v1/responses", json=follow, timeout=TIMEOUT)
            assert here.status_code == 200, here.text
            _unavailable(httpx.delete(own, timeout=TIMEOUT), None)
            metrics = httpx.get(f"{other.url}/metrics", timeout=TIMEOUT).text
            assert 'tokenwire_stream_store_errors_total{operation="response read"}' in metrics

            redis_server.start()
            back = _when_back(url, 200)
            assert back.json() == created.json()
            # The owner answers from Redis again too (an unknown id: 404, no longer 503).
            _when_back(f"{owner.url}/v1/responses/resp_never", 404)
            continued = httpx.post(f"{other.url}/v1/responses", json=follow, timeout=TIMEOUT)
            assert continued.status_code == 200, continued.text
            deleted = httpx.delete(url, timeout=TIMEOUT)
            assert deleted.status_code == 200, deleted.text
            gone = httpx.get(own, timeout=TIMEOUT)
            assert gone.status_code == 404, gone.text  # deleted everywhere
            assert gone.json()["error"]["param"] == "response_id"
        finally:
            owner.stop()
            other.stop()


def _when_back(url: str, status: int) -> httpx.Response:
    """The GET once the replica asks Redis again (it leaves a failed Redis alone for a
    second): 503 until then, then `status`."""
    deadline = time.monotonic() + 30
    while True:
        reply = httpx.get(url, timeout=TIMEOUT)
        if reply.status_code != 503 or time.monotonic() > deadline:
            assert reply.status_code == status, reply.text
            return reply
        time.sleep(0.2)
