"""`DELETE /v1/requests/{id}` while the shared stream store is down: for a request this replica
does not run, nobody can say whether another one does, so the answer is a 503, not a 404."""

from __future__ import annotations

import httpx

from tests._support.scaleout import ServeProcess, running_redis


def test_a_cancel_for_a_request_unknown_here_is_a_503_while_redis_is_down() -> None:
    with running_redis() as redis_server:
        args = [
            "--backend", "echo", "--stream-store", redis_server.url,
            "--middleware", "cancellation", "--middleware", "metrics",
        ]  # fmt: skip
        replica = ServeProcess(args)
        try:
            replica.wait_ready()
            unknown = httpx.delete(f"{replica.url}/v1/requests/nobody-1", timeout=10)
            assert unknown.status_code == 404  # Redis answers: it runs nowhere
            redis_server.stop()
            down = httpx.delete(f"{replica.url}/v1/requests/nobody-2", timeout=10)
            assert down.status_code == 503, down.text
            error = down.json()["error"]
            assert "unreachable" in error["message"] and error["type"] == "server_error"
            metrics = httpx.get(f"{replica.url}/metrics", timeout=10).text
            assert 'tokenwire_stream_store_errors_total{operation="cancel"}' in metrics
            redis_server.start()
            back = httpx.delete(f"{replica.url}/v1/requests/nobody-3", timeout=10)
            assert back.status_code == 404, back.text
        finally:
            replica.stop()
