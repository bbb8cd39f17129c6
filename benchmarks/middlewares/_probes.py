"""The three measurements of `benchmarks.middlewares`: throughput, disconnect, resume.

Throughput runs two `tokenwire serve` processes (middlewares on, off); the disconnect and
resume probes serve an in-process `OnnxBackend` from a uvicorn thread, so the client can
read `backend.stats` (the scheduler's counters) while it drops and reconnects.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from starlette.types import ASGIApp

from tokenwire.backends.onnx.backend import OnnxBackend

ALL_MIDDLEWARES = ("metrics", "cancellation", "prompt_cache")
_TOPICS = (
    "a lighthouse keeper", "a lost robot", "a desert caravan", "a chess prodigy",
    "a night train", "a mountain village", "an old violin", "a deep-sea diver",
    "a city garden", "a tired dragon", "a radio operator", "a paper boat",
)  # fmt: skip


def prompt(index: int) -> str:
    """A distinct prompt per request: its first words differ, so no cached prefix beyond the
    chat template's fixed head can be reused."""
    return f"Story {index}-{uuid.uuid4().hex[:6]}: write a long story about {_TOPICS[index % 12]}."


def chat(model_id: str, text: str, max_tokens: int) -> dict[str, object]:
    return {
        "model": model_id,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
    }


def _is_content(line: str) -> bool:
    if not line.startswith("data: {"):
        return False
    return any(c["delta"].get("content") for c in json.loads(line[6:]).get("choices", []))


# -- 1. throughput: middlewares on vs off, each in its own `tokenwire serve` process --------


@dataclass(frozen=True, slots=True)
class Completion:
    tokens: int
    cached_tokens: int


def complete(url: str, body: dict[str, object]) -> Completion:
    """Stream one request to its end; the usage chunk says how many tokens came."""
    usage: dict[str, object] | None = None
    with (
        httpx.Client(base_url=url, timeout=600) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage") or usage
    if usage is None:
        raise RuntimeError("the stream carried no usage")
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
    return Completion(int(usage["completion_tokens"]), int(cached))  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class Throughput:
    """One timed batch of `streams` concurrent requests against one server."""

    config: str
    streams: int
    round: int
    tokens: int
    cached_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def throughput(
    url: str, model_id: str, *, config: str, streams: int, round_: int, max_tokens: int, seed: int
) -> Throughput:
    results: list[Completion | BaseException] = []
    bodies = [chat(model_id, prompt(seed + i), max_tokens) for i in range(streams)]

    def one(body: dict[str, object]) -> None:
        try:
            results.append(complete(url, body))
        except BaseException as exc:  # re-raised in the caller's thread
            results.append(exc)

    threads = [threading.Thread(target=one, args=(b,)) for b in bodies]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    done = [r for r in results if isinstance(r, Completion)]
    if len(done) != streams:
        raise RuntimeError(f"{streams - len(done)} streams failed: {results}")
    return Throughput(
        config, streams, round_, sum(c.tokens for c in done),
        sum(c.cached_tokens for c in done), seconds,
    )  # fmt: skip


# -- 2 and 3: an in-process server, so the client can watch the scheduler -------------------


@contextmanager
def running_server(app: ASGIApp, *, timeout: float = 60.0) -> Iterator[str]:
    """Serve `app` from a uvicorn thread on 127.0.0.1 until the block ends; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def _busy(backend: OnnxBackend) -> bool:
    stats = backend.stats
    return stats.running + stats.prefilling + stats.waiting > 0


def wait_idle(backend: OnnxBackend, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _busy(backend):
        if time.monotonic() > deadline:
            raise TimeoutError("the backend still holds a sequence")
        time.sleep(0.005)


@dataclass(frozen=True, slots=True)
class DisconnectSample:
    """Client closed the connection after `after_tokens` deltas; the slot left `ms` later,
    `steps` decode steps after."""

    after_tokens: int
    ms: float
    steps: int


def disconnect_once(
    url: str, backend: OnnxBackend, model_id: str, index: int, *, after: int, max_tokens: int
) -> DisconnectSample | None:
    """None when the model finished before `after` deltas (nothing left to cancel)."""
    wait_idle(backend)
    seen = 0
    with httpx.Client(base_url=url, timeout=120) as client:
        body = chat(model_id, prompt(index), max_tokens)
        response = client.send(client.build_request("POST", "/v1/chat/completions", json=body),
                               stream=True)  # fmt: skip
        for line in response.iter_lines():
            if line == "data: [DONE]" or '"finish_reason":"' in line.replace(" ", ""):
                response.close()
                return None
            seen += _is_content(line)
            if seen >= after:
                break
        steps = backend.stats.steps
        closed = time.monotonic()
        # Closing a half-read response closes its connection: the server sees a disconnect.
        response.close()
    deadline = closed + 10
    while _busy(backend):
        if time.monotonic() > deadline:
            raise TimeoutError("the cancelled sequence never left the batch")
        time.sleep(0.001)
    gone = time.monotonic()
    return DisconnectSample(after, (gone - closed) * 1000, backend.stats.steps - steps)


@dataclass(frozen=True, slots=True)
class ResumeSample:
    """Dropped after `after_tokens` deltas; reconnecting got its first replayed event after
    `ms` (new connection included) and the whole stream matched an unbroken one in ids."""

    after_tokens: int
    ms: float
    replayed_ids_contiguous: bool


def resume_once(
    url: str, model_id: str, index: int, *, after: int, max_tokens: int
) -> ResumeSample | None:
    request_id = f"bench-resume-{index}-{uuid.uuid4().hex[:8]}"
    body = chat(model_id, prompt(index), max_tokens)
    last_id = ""
    seen = 0
    with (
        httpx.Client(base_url=url, timeout=120) as client,
        client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"x-request-id": request_id}
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("id: "):
                last_id = line[4:]
            if line == "data: [DONE]":
                return None
            seen += _is_content(line)
            if seen >= after and last_id:
                break
    # A new client: a reconnect is a new connection, as a browser's EventSource makes.
    with httpx.Client(base_url=url, timeout=120) as client:
        started = time.perf_counter()
        first: float | None = None
        ids: list[int] = []
        with client.stream(
            "GET", f"/v1/streams/{request_id}", headers={"last-event-id": last_id}
        ) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("id: "):
                    ids.append(int(line.rsplit(":", 1)[1]))
                if line.startswith("data: ") and first is None:
                    first = time.perf_counter()
                # Read to the end, so no orphaned generation slows the next sample.
    if first is None:
        raise RuntimeError("the reconnect replayed nothing")
    after_seq = int(last_id.rsplit(":", 1)[1])
    expected = list(range(after_seq + 1, after_seq + 1 + len(ids)))
    return ResumeSample(after, (first - started) * 1000, ids == expected)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 20 samples is their maximum)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]
