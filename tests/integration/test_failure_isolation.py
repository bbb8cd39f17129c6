"""Failure isolation against a real server: one request's failure stays in its stream, and a
backend that keeps failing turns readiness 503."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests._support.server import running_server
from tests.backends.onnx.test_health import FaultySession
from tests.backends.onnx.tiny_models import write_model_dir
from tokenwire import Event, Finish, GenerationRequest, TokenDelta, Usage, create_app
from tokenwire.backends.onnx import OnnxBackend

pytestmark = pytest.mark.anyio

PATH = "/v1/chat/completions"


class OneBadRequestBackend:
    """Streams 30 words to everyone; a prompt containing "fail" raises after 3 of them."""

    model_id = "m"

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        assert request.messages is not None
        doomed = "fail" in request.messages[-1].content
        for index in range(30):
            if doomed and index == 3:
                raise RuntimeError("boom: secret internals")
            await anyio.sleep(0.005)
            yield TokenDelta(f" w{index}", (index,))
        yield Finish("stop", Usage(1, 30))


def chat(content: str, max_tokens: int | None = None, model: str = "m") -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": content}],
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


async def read_stream(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[int, list[Any]]:
    chunks: list[Any] = []
    async with client.stream("POST", PATH, json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line[6:]
                chunks.append(data if data == "[DONE]" else json.loads(data))
        return response.status_code, chunks


async def test_a_backend_exception_ends_only_its_own_stream_in_band() -> None:
    with running_server(create_app(OneBadRequestBackend())) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            results: dict[str, tuple[int, list[Any]]] = {}

            async def run(name: str) -> None:
                results[name] = await read_stream(client, chat(name))

            async with anyio.create_task_group() as tg:
                for name in ("ok-1", "ok-2", "please fail", "ok-3", "ok-4"):
                    tg.start_soon(run, name)
    status, doomed = results.pop("please fail")
    assert status == 200  # the failure came after the first token: in band
    errors = [c for c in doomed if isinstance(c, dict) and "error" in c]
    assert len(errors) == 1 and "secret" not in json.dumps(errors)
    for status, chunks in results.values():
        assert status == 200
        text = "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in chunks
            if isinstance(c, dict) and c.get("choices")
        )
        assert text == "".join(f" w{i}" for i in range(30))
        reasons = [c["choices"][0]["finish_reason"] for c in chunks if isinstance(c, dict)]
        assert reasons[-1] == "stop"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("tiny") / "shared", "shared")


async def test_readiness_turns_503_while_the_model_keeps_failing_and_back_after(
    tiny_model: Path,
) -> None:
    backend = OnnxBackend(tiny_model, max_batch=4)
    with running_server(create_app(backend)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/health/ready")).status_code == 200
            status, chunks = await read_stream(client, chat("hello", 8, backend.model_id))
            assert status == 200 and chunks[-1] == "[DONE]"

            assert backend._loop is not None
            runner: Any = backend._loop.runner
            healthy_session = runner.session
            runner.session = FaultySession(healthy_session, failures=None)
            broken_at = time.perf_counter()
            flipped_at: float | None = None

            async def traffic() -> None:
                while flipped_at is None:
                    status, _ = await read_stream(client, chat("hello", 8, backend.model_id))
                    assert status == 500  # fails before its first token: a real 500

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(traffic)
                with anyio.fail_after(10):
                    while True:
                        ready = await client.get("/health/ready")
                        if ready.status_code == 503:
                            flipped_at = time.perf_counter()
                            break
                        await anyio.sleep(0.005)
            assert ready.json()["status"] == "unhealthy"
            assert flipped_at - broken_at < 5.0

            # Repaired: the next request that gets through clears the health at once.
            runner.session = healthy_session
            status, chunks = await read_stream(client, chat("hello", 8, backend.model_id))
            assert status == 200 and chunks[-1] == "[DONE]"
            assert (await client.get("/health/ready")).status_code == 200
