"""The soak's clients: many OpenAI chat streams, some dropped at random points, some slow.

A plan decides up front, from a seeded RNG, what each stream does: read normally, read
slowly (a small receive buffer and a pause per event), or disconnect — before its first
byte (while queued or prefilling) or after a random number of deltas (decoding).
"""

from __future__ import annotations

import json
import random
import socket
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import httpx

PATH = "/v1/chat/completions"
Kind = Literal["normal", "slow", "drop"]


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What one client does. `drop_after` deltas are read before a "drop" disconnects
    (0: it leaves `drop_delay` seconds after sending, before any byte came back)."""

    index: int
    prompt: str
    kind: Kind
    drop_after: int = 0
    drop_delay: float = 0.0


@dataclass(slots=True)
class StreamOutcome:
    plan: StreamPlan
    status: int | None = None
    text: str = ""
    finish_reason: str | None = None
    done: bool = False
    error: str | None = None
    dropped: bool = False
    gaps: list[float] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        """Ended normally: 200, a finish reason, `[DONE]`, no error."""
        return (
            self.status == 200
            and self.error is None
            and self.done
            and self.finish_reason in ("stop", "length")
        )


def make_plans(
    count: int,
    prompts: Sequence[str],
    *,
    seed: int = 0,
    drop_share: float = 0.10,
    slow_share: float = 0.05,
    max_drop_after: int = 40,
    max_drop_delay: float = 0.3,
) -> list[StreamPlan]:
    """`count` plans: exactly `drop_share` drop (a third of them before the first byte),
    `slow_share` read slowly, the rest read normally; shuffled."""
    rng = random.Random(seed)
    drops, slows = round(count * drop_share), round(count * slow_share)
    drop: Kind = "drop"
    slow: Kind = "slow"
    normal: Kind = "normal"
    kinds = [drop] * drops + [slow] * slows + [normal] * (count - drops - slows)
    rng.shuffle(kinds)
    plans = []
    for index, kind in enumerate(kinds):
        prompt = prompts[index % len(prompts)]
        if kind != "drop":
            plans.append(StreamPlan(index, prompt, kind))
        elif rng.random() < 1 / 3:
            plans.append(StreamPlan(index, prompt, kind, 0, rng.uniform(0.0, max_drop_delay)))
        else:
            plans.append(StreamPlan(index, prompt, kind, rng.randint(1, max_drop_after)))
    return plans


def chat_body(model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "stream": True,
        "temperature": 0,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }


def slow_client(base_url: str) -> httpx.AsyncClient:
    """A client whose sockets have a ~4 KiB receive buffer, so reading slowly pushes back."""
    transport = httpx.AsyncHTTPTransport(
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
    )
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=600)


async def run_stream(
    client: httpx.AsyncClient,
    plan: StreamPlan,
    body: dict[str, Any],
    *,
    slow_pause: float = 0.02,
) -> StreamOutcome:
    outcome = StreamOutcome(plan)
    deltas = 0
    last: float | None = None
    limit = plan.drop_delay if plan.kind == "drop" and plan.drop_after == 0 else None
    with anyio.move_on_after(limit if limit is not None else float("inf")) as scope:
        async with client.stream("POST", PATH, json=body) as response:
            outcome.status = response.status_code
            if response.status_code != 200:
                await response.aread()
                outcome.error = response.text[:200]
                return outcome
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    outcome.done = True
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    outcome.error = json.dumps(chunk["error"])[:200]
                    continue
                choices = chunk.get("choices") or []
                if not choices:
                    continue
                content = choices[0]["delta"].get("content")
                if content:
                    now = time.perf_counter()
                    if last is not None:
                        outcome.gaps.append(now - last)
                    last = now
                    outcome.text += content
                    deltas += 1
                    if plan.kind == "drop" and deltas >= plan.drop_after > 0:
                        outcome.dropped = True
                        return outcome  # leaving the block closes the connection
                if choices[0].get("finish_reason"):
                    outcome.finish_reason = choices[0]["finish_reason"]
                if plan.kind == "slow":
                    await anyio.sleep(slow_pause)
    if scope.cancelled_caught:
        outcome.dropped = True
    return outcome


async def run_plans(
    base_url: str,
    plans: Sequence[StreamPlan],
    *,
    concurrency: int,
    model: str,
    max_tokens: int,
    slow_pause: float = 0.02,
) -> list[StreamOutcome]:
    """Run every plan, `concurrency` at a time; returns outcomes in plan order."""
    outcomes: list[StreamOutcome | None] = [None] * len(plans)
    limiter = anyio.Semaphore(concurrency)
    async with (
        httpx.AsyncClient(
            base_url=base_url,
            timeout=600,
            limits=httpx.Limits(max_connections=concurrency * 2),
        ) as fast,
        slow_client(base_url) as slow,
    ):

        async def one(plan: StreamPlan) -> None:
            async with limiter:
                client = slow if plan.kind == "slow" else fast
                body = chat_body(model, plan.prompt, max_tokens)
                try:
                    outcomes[plan.index] = await run_stream(
                        client, plan, body, slow_pause=slow_pause
                    )
                except httpx.HTTPError as exc:
                    outcomes[plan.index] = StreamOutcome(plan, error=f"{type(exc).__name__}")

        async with anyio.create_task_group() as tg:
            for plan in plans:
                tg.start_soon(one, plan)
    return [o for o in outcomes if o is not None]


@dataclass(frozen=True, slots=True)
class Tally:
    """What the outcomes add up to."""

    streams: int
    completed: int
    dropped: int
    failed: int
    server_errors: int
    slow_completed: int

    @classmethod
    def of(cls, outcomes: Sequence[StreamOutcome]) -> Tally:
        dropped = sum(o.dropped for o in outcomes)
        completed = sum(o.completed and not o.dropped for o in outcomes)
        return cls(
            streams=len(outcomes),
            completed=completed,
            dropped=dropped,
            failed=len(outcomes) - completed - dropped,
            server_errors=sum((o.status or 0) >= 500 for o in outcomes),
            slow_completed=sum(o.completed for o in outcomes if o.plan.kind == "slow"),
        )


def p99(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[98]


@contextmanager
def stalled_readers(base_url: str, body: dict[str, Any], count: int) -> Iterator[None]:
    """`count` clients that send a streamed request, then read nothing with a ~4 KiB
    receive buffer (set before connecting: it sets the TCP window)."""
    host, port = base_url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    request = (
        f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, int(port)))
            sock.sendall(request)
            socks.append(sock)
        yield
    finally:
        for sock in socks:
            sock.close()


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples in Prometheus text, over those matching `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric = head.split("{", 1)[0]
        if metric != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
