"""Failover: the replica that owns a stream is SIGKILLed mid-stream, and the client's
reconnect through the balancer gets the rest of it from another replica (which adopts the
stream: it replays the tokens the dead one had produced and generates on). Adoption is fenced:
of two replicas racing to adopt, one produces."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anyio
import httpx
import pytest

from tests._support.scaleout import RedisServer, ServeProcess, running_haproxy, running_redis
from tests.scaleout.test_cluster import DIALECTS, TIMEOUT, Events, body, ended, text_of

PROMPT = " ".join(f"f{i}" for i in range(80))
READ_TIMEOUT = httpx.Timeout(30.0)


@dataclass
class Cluster:
    url: str
    redis: RedisServer
    replicas: list[ServeProcess]
    args: list[str]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """Three echo replicas at 25 ms a token (an 80-word stream lasts 2 s, so a kill lands
    mid-stream), a short lease, and an HAProxy that sends a refused connection elsewhere."""
    with running_redis() as redis_server:
        args = [
            "--backend", "echo", "--backend-option", "delay=0.025", "--resume-grace", "2",
            "--stream-store", redis_server.url, "--middleware", "metrics",
        ]  # fmt: skip
        replicas = [ServeProcess(args) for _ in range(3)]
        try:
            for replica in replicas:
                replica.wait_ready()
            options = ["option redispatch 1", "retries 3"]
            with running_haproxy([r.url for r in replicas], options) as url:
                yield Cluster(url, redis_server, replicas, args)
        finally:
            for replica in replicas:
                replica.stop()


def kill_mid_stream(
    owner: ServeProcess,
    dialect: str,
    request_id: str,
    count: int,
    extra: dict[str, object] | None = None,
) -> list[dict[str, str]]:
    """Open the stream on `owner` (its body with `extra`), read its first `count` events,
    then SIGKILL the owner."""
    with httpx.Client(timeout=TIMEOUT) as client, client.stream(
        "POST", owner.url + DIALECTS[dialect][0], json={**body(dialect, PROMPT), **(extra or {})},
        headers={"x-request-id": request_id},
    ) as response:  # fmt: skip
        assert response.status_code == 200
        events = Events(response).take(count)
        owner.kill()
        return events


def resume(url: str, dialect: str, request_id: str, last_id: str, how: str) -> list[dict[str, str]]:
    """Reconnect (GET, or the same POST with Last-Event-ID) and read to the end."""
    headers = {"last-event-id": last_id}
    with httpx.Client(timeout=READ_TIMEOUT) as client:
        if how == "get":
            stream = client.stream("GET", f"{url}/v1/streams/{request_id}", headers=headers)
        else:
            stream = client.stream(
                "POST", url + DIALECTS[dialect][0], json=body(dialect, PROMPT), headers=headers
            )
        with stream as response:
            assert response.status_code == 200, response.read()
            return Events(response).take(None)


def uninterrupted(url: str, dialect: str) -> list[dict[str, str]]:
    with httpx.Client(timeout=READ_TIMEOUT) as client, client.stream(
        "POST", url + DIALECTS[dialect][0], json=body(dialect, PROMPT),
        headers={"x-request-id": f"whole-{time.monotonic_ns()}"},
    ) as response:  # fmt: skip
        return Events(response).take(None)


@pytest.mark.parametrize(("dialect", "how"), [("openai", "get"), ("anthropic", "post")])
def test_a_killed_owners_stream_is_continued_by_another_replica(
    cluster: Cluster, dialect: str, how: str
) -> None:
    request_id = f"failover-{dialect}-{time.monotonic_ns()}"
    owner = cluster.replicas[0]
    events = kill_mid_stream(owner, dialect, request_id, 15)
    events += resume(cluster.url, dialect, request_id, events[-1]["id"], how)
    ids = [e["id"] for e in events]
    assert ids == [f"{request_id}:{n}" for n in range(len(events))]  # none lost, none twice
    assert ended(events)
    whole = uninterrupted(cluster.url, dialect)
    assert text_of(events) == text_of(whole)
    assert text_of(events).strip() == PROMPT
    # Byte for byte what an uninterrupted stream sends, but for the ids (its own request's).
    assert [(e.get("event"), _anonymous(e["data"], request_id)) for e in events] == [
        (e.get("event"), _anonymous(e["data"], e["id"].rsplit(":", 1)[0])) for e in whole
    ]


def _anonymous(data: str, request_id: str) -> str:
    """A payload with its request's id (and OpenAI's `created` second) blanked out."""
    import json
    import re

    from tokenwire.dialects._wire import id_tail

    data = data.replace(id_tail(request_id), "ID")
    if data.startswith("{"):
        document = json.loads(data)
        document.pop("created", None)
        data = json.dumps(document)
    return re.sub(r'"input_tokens": \d+', '"input_tokens": 0', data)


def test_two_readers_get_the_same_continuation(cluster: Cluster) -> None:
    """Readers on both surviving replicas wait on the dead owner's stream: both replicas
    race to adopt it, one produces, and both readers see the same payloads once each."""
    request_id = f"fenced-{time.monotonic_ns()}"
    events = kill_mid_stream(cluster.replicas[0], "openai", request_id, 10)
    last = events[-1]["id"]
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(resume, replica.url, "openai", request_id, last, "get")
            for replica in cluster.replicas[1:]
        ]
        rests = [future.result(timeout=60) for future in futures]
    assert rests[0] == rests[1]
    whole = events + rests[0]
    assert [e["id"] for e in whole] == [f"{request_id}:{n}" for n in range(len(whole))]
    assert ended(whole) and text_of(whole) == PROMPT


def test_the_adopter_counts_only_the_tokens_it_generated(cluster: Cluster) -> None:
    """The dead owner counted the tokens it streamed; the adopting replica replays them
    uncounted and counts what it generates after them (each token once, across replicas),
    while the client's usage at the end still covers the whole answer."""
    owner, adopter, _ = cluster.replicas
    request_id = f"counted-{time.monotonic_ns()}"
    before = _counters(adopter)
    include_usage = {"stream_options": {"include_usage": True}}
    events = kill_mid_stream(owner, "openai", request_id, 15, include_usage)
    replayed = _recorded_tokens(cluster.redis, request_id)
    # What reached Redis: the client may have read a little more (the last flush), which
    # the adopter generates again, and counts, as it did that work itself.
    assert 0 < replayed < 80
    events += resume(adopter.url, "openai", request_id, events[-1]["id"], "get")
    assert ended(events) and text_of(events) == PROMPT
    after = _counters(adopter)
    grew = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    assert grew["tokenwire_generation_tokens_total"] == 80 - replayed
    assert grew["tokenwire_prompt_tokens_total"] == 80  # counted at the end: the owner never was
    assert grew["tokenwire_requests_total"] == 1
    assert grew.get("tokenwire_time_to_first_token_seconds_count", 0.0) == 0
    import json

    usage = json.loads(events[-2]["data"])["usage"]  # the chunk before [DONE]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (80, 80)


def _counters(replica: ServeProcess) -> dict[str, float]:
    """Every sample of the replica's /metrics summed over its labels, by sample name."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{replica.url}/metrics", timeout=TIMEOUT).text
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def _recorded_tokens(server: RedisServer, request_id: str) -> int:
    """How many tokens a continuation of the orphaned stream replays (as the adopter reads
    them: those whose payloads were all stored)."""
    from redis.asyncio import Redis

    from tokenwire.stores.redis_failover import load_orphan

    async def read() -> int:
        client = Redis.from_url(server.url)
        try:
            orphan = await load_orphan(client, request_id)
        finally:
            await client.aclose()
        assert orphan is not None
        return sum(len(group) for group in orphan.groups)

    return anyio.run(read)


def test_adoption_is_fenced() -> None:
    """Two replicas' failover (real Redis, one client each) race for one orphaned stream:
    exactly one wins its lease; the other gets nothing to produce."""
    from tokenwire.stores.redis_connection import connect, key
    from tokenwire.stores.redis_control import RedisStreamControl
    from tokenwire.stores.redis_store import RedisStreamStore
    from tokenwire.transports._failover import Failover

    class Continues:
        def can_continue(self, request: object) -> bool:
            return True

    with running_redis() as server:

        async def race() -> list[object]:
            clients = [connect(server.url) for _ in range(2)]
            stores = [RedisStreamStore(c, max_stream_bytes=1 << 20, ttl_seconds=60, done_seconds=5)
                      for c in clients]  # fmt: skip
            failovers = []
            for client, store in zip(clients, stores, strict=True):
                failover = Failover(client, store, RedisStreamControl(client), 60)
                failover.serve({"openai-chat": _endpoint()}, Continues())
                failovers.append(failover)
            meta = {
                "body": '{"model": "echo", "stream": true, "messages": '
                '[{"role": "user", "content": "a b c"}]}',
                "path": "{}",
                "identity": "{}",
            }
            await stores[0].create("orphan", "openai-chat", meta)  # its owner never claimed
            results: list[object] = [None, None]

            async def adopt(i: int) -> None:
                results[i] = await failovers[i].adopt("orphan", 5.0)

            async with anyio.create_task_group() as tg:
                for i in range(2):
                    tg.start_soon(adopt, i)
            owner = await clients[0].get(key("orphan", "owner"))
            for client in clients:
                await client.aclose()
            return [*results, owner]

        first, second, owner = anyio.run(race)
    winners = [r for r in (first, second) if r is not None]
    assert len(winners) == 1
    assert owner is not None


def _endpoint():  # type: ignore[no-untyped-def]
    from tokenwire.backends.echo import EchoBackend
    from tokenwire.dialects.openai_chat import OpenAIChatDialect
    from tokenwire.endpoint import Endpoint

    return Endpoint(OpenAIChatDialect(), EchoBackend().generate, "echo")


def test_without_failover_a_killed_owners_stream_ends_where_it_was_stored() -> None:
    """`--no-failover`: no tokens are recorded and nobody adopts; the reconnect replays what
    the dead owner stored and the stream ends there (unfinished), instead of hanging."""
    import redis

    from tokenwire.stores.redis_connection import key

    with running_redis() as redis_server:
        args = [
            "--backend", "echo", "--backend-option", "delay=0.025", "--resume-grace", "2",
            "--stream-store", redis_server.url, "--no-failover",
        ]  # fmt: skip
        owner, survivor = ServeProcess(args), ServeProcess(args)
        try:
            owner.wait_ready()
            survivor.wait_ready()
            request_id = f"no-failover-{time.monotonic_ns()}"
            events = kill_mid_stream(owner, "openai", request_id, 15)
            started = time.monotonic()
            events += resume(survivor.url, "openai", request_id, events[-1]["id"], "get")
            assert time.monotonic() - started < 20  # the lease's expiry ends it
            ids = [e["id"] for e in events]
            assert ids == [f"{request_id}:{n}" for n in range(len(events))]
            assert not ended(events)
            assert PROMPT.startswith(text_of(events).strip())
            assert len(text_of(events).split()) < len(PROMPT.split())
            with redis.Redis.from_url(redis_server.url) as client:
                assert client.exists(key(request_id, "tokens")) == 0  # nothing recorded
        finally:
            owner.stop()
            survivor.stop()
