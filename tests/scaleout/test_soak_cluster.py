"""The scale-out soak: 300 streams at 32 concurrent through a round-robin HAProxy in front of
3 replicas sharing a real redis-server; 10% of clients drop at a random point and reconnect
through the balancer (usually landing on another replica). Every stream must come back whole
— each payload id once, in order — and once the streams expire, each replica's RSS, Redis's
memory and Redis's key count must be back near where they were before.

The grace period is 1 s, so a finished stream's keys expire a second after its end. The
lease's generation counter outlives the lease by 60 s by design (it fences a late writer),
so the key count is compared without those counters and their expiry is checked instead.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import httpx
import pytest
import redis
from benchmarks._shared.proc_stats import rss_bytes

from tests._support.scaleout import Cluster, running_cluster

STREAMS = 300
CONCURRENCY = 32
DROPPED = 30  # 10%
WORDS = 400
GRACE_SECONDS = 1.0
PROMPT = " ".join(f"s{i}" for i in range(WORDS))
# Near baseline: room for the allocator's and the connection pools' noise, far below what
# one stream's state left behind per stream would add (300 × ~400 payloads of ~200 bytes).
RSS_SLACK = 8 << 20
REDIS_MEMORY_SLACK = 1 << 20


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    args = [
        "--backend", "echo", "--backend-option", "delay=0.001",
        "--resume-grace", str(GRACE_SECONDS), "--middleware", "metrics",
    ]  # fmt: skip
    with running_cluster(args) as running:
        yield running


@dataclass
class Outcome:
    request_id: str
    ids: list[str] = field(default_factory=list)
    text: str = ""
    reconnects: int = 0
    statuses: list[int] = field(default_factory=list)
    ended: bool = False


async def _events(response: httpx.Response, outcome: Outcome, limit: int | None) -> None:
    """Read SSE events off `response` into `outcome` until the end or `limit` ids."""
    taken = 0
    event_id = None
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: ") and event_id is not None:
            data = line[6:]
            outcome.ids.append(event_id)
            event_id = None
            if data == "[DONE]":
                outcome.ended = True
                return
            for choice in json.loads(data).get("choices", []):
                outcome.text += choice["delta"].get("content") or ""
            taken += 1
            if limit is not None and taken >= limit:
                return


async def _stream(client: httpx.AsyncClient, n: int, drop_at: int | None) -> Outcome:
    outcome = Outcome(f"soak-{n}-{time.monotonic_ns()}")
    body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    headers = {"x-request-id": outcome.request_id}
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        outcome.statuses.append(r.status_code)
        await _events(r, outcome, drop_at)
    while not outcome.ended and outcome.reconnects < 5:
        # Dropped: reconnect through the balancer from the last id seen.
        outcome.reconnects += 1
        last = {"last-event-id": outcome.ids[-1]}
        async with client.stream("GET", f"/v1/streams/{outcome.request_id}", headers=last) as r:
            outcome.statuses.append(r.status_code)
            if r.status_code == 200:
                await _events(r, outcome, None)
    return outcome


async def _soak(url: str, streams: int, dropped: int, seed: int) -> list[Outcome]:
    rng = random.Random(seed)
    drops: dict[int, int | None] = {n: None for n in range(streams)}
    for n in rng.sample(range(streams), dropped):
        drops[n] = rng.randint(1, WORDS - 1)  # a random point of the stream
    outcomes: list[Outcome] = []
    limit = anyio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY * 2)

    async def one(n: int) -> None:
        async with limit:
            outcomes.append(await _stream(client, n, drops[n]))

    client = httpx.AsyncClient(base_url=url, timeout=30, limits=limits)
    async with client, anyio.create_task_group() as tg:
        for n in range(streams):
            tg.start_soon(one, n)
    return outcomes


def _check(outcomes: list[Outcome], streams: int, dropped: int) -> None:
    assert len(outcomes) == streams
    assert sum(o.reconnects > 0 for o in outcomes) == dropped
    for o in outcomes:
        assert o.statuses and all(s == 200 for s in o.statuses), (o.request_id, o.statuses)
        assert o.ended, o.request_id
        # 0 lost, 0 duplicated: every payload id once, in order, and the whole text.
        assert o.ids == [f"{o.request_id}:{i}" for i in range(len(o.ids))], o.request_id
        assert o.text.strip() == PROMPT, o.request_id


@dataclass(frozen=True)
class Footprint:
    rss: list[int]
    redis_memory: int
    redis_keys: int  # besides the generation counters


def _footprint(cluster: Cluster) -> Footprint:
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        counters = sum(1 for _ in client.scan_iter(match="tokenwire:*:generation", count=1000))
        keys = int(client.dbsize()) - counters
        memory = int(client.info("memory")["used_memory"])
    finally:
        client.close()
    return Footprint([rss_bytes(r.process.pid) for r in cluster.replicas], memory, keys)


def _settled(cluster: Cluster, baseline: Footprint, timeout: float = 20.0) -> Footprint:
    """The footprint once every stream's keys expired (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        now = _footprint(cluster)
        if now.redis_keys <= baseline.redis_keys or time.monotonic() > deadline:
            return now
        time.sleep(0.25)


def test_soak_across_replicas_loses_nothing_and_returns_to_baseline(cluster: Cluster) -> None:
    # Warm up with the same concurrency (connection pools, allocator arenas), then wait for
    # its streams to expire: that is the baseline.
    warm = anyio.run(_soak, cluster.url, 64, 6, 0)
    _check(warm, 64, 6)
    baseline = _settled(cluster, Footprint([], 0, 0))

    outcomes = anyio.run(_soak, cluster.url, STREAMS, DROPPED, 1)
    _check(outcomes, STREAMS, DROPPED)

    after = _settled(cluster, baseline)
    for replica in cluster.replicas:  # the store never failed: every stream stayed shared
        metrics = httpx.get(f"{replica.url}/metrics", timeout=10).text
        assert "tokenwire_stream_store_errors_total{" not in metrics
    assert after.redis_keys == baseline.redis_keys, (baseline, after)
    assert after.redis_memory <= baseline.redis_memory + REDIS_MEMORY_SLACK, (baseline, after)
    for before_rss, after_rss in zip(baseline.rss, after.rss, strict=True):
        assert after_rss <= before_rss + RSS_SLACK, (baseline, after)
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        for name in client.scan_iter(match="tokenwire:*:generation", count=1000):
            assert 0 < client.pttl(name) <= 62_000  # counters expire too, a minute on
    finally:
        client.close()
