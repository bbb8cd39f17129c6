"""One contract, two stores: the memory store and the Redis store against a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from tests._support.scaleout import RedisServer, running_redis
from tokenwire.errors import ContextLengthExceededError
from tokenwire.interfaces import Payload
from tokenwire.stores.memory_store import MemoryStreamStore
from tokenwire.stores.stream_store import StreamStore, StreamStoreError

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StreamStore]:
    if request.param == "memory":
        yield MemoryStreamStore(max_stream_bytes=1000, max_total_bytes=1 << 20)
        return
    from tokenwire.stores.redis_connection import connect
    from tokenwire.stores.redis_control import RedisStreamControl
    from tokenwire.stores.redis_store import RedisStreamStore

    server: RedisServer = request.getfixturevalue("redis_server")
    client = connect(server.url)
    # The Redis store answers `info` only while the stream has an owner (or has ended).
    control = RedisStreamControl(client)
    store = RedisStreamStore(client, max_stream_bytes=1000, ttl_seconds=30, done_seconds=5)
    original = store.create

    async def create_owned(request_id: str, dialect: str, meta: object = None) -> bool:
        await control.claim(request_id, 30)
        return await original(request_id, dialect)

    store.create = create_owned  # type: ignore[method-assign]
    yield store
    await client.aclose()


def payloads(count: int, size: int = 10) -> list[Payload]:
    return [Payload(f"{i:0{size}d}", "delta" if i % 2 else None) for i in range(count)]


async def read_all(store: StreamStore, request_id: str, start: int) -> list[tuple[int, Payload]]:
    return [item async for item in store.read(request_id, start)]


async def test_a_finished_stream_replays_from_any_point(store: StreamStore) -> None:
    rid = uuid.uuid4().hex
    assert await store.create(rid, "openai")
    sent = payloads(20)
    await store.append(rid, sent[:7])
    await store.append(rid, sent[7:])
    await store.finish(rid)
    assert await read_all(store, rid, 0) == list(enumerate(sent))
    assert await read_all(store, rid, 13) == list(enumerate(sent))[13:]
    info = await store.info(rid)
    assert info is not None and info.dialect == "openai" and info.done and info.first_seq == 0


async def test_a_reader_gets_live_payloads_until_the_end(store: StreamStore) -> None:
    rid = uuid.uuid4().hex
    assert await store.create(rid, "anthropic")
    sent = payloads(30)
    got: list[tuple[int, Payload]] = []

    async def reader() -> None:
        got.extend(await read_all(store, rid, 0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        for payload in sent:
            await store.append(rid, [payload])
            await anyio.sleep(0.002)
        await store.finish(rid)
    assert got == list(enumerate(sent))


async def test_a_reader_ahead_of_the_first_write_gets_its_payloads(store: StreamStore) -> None:
    """A client that read payloads from its producer's memory reconnects elsewhere before
    the first batch reached the store: the batch holding its next payload still reaches it."""
    rid = uuid.uuid4().hex
    assert await store.create(rid, "openai")
    sent = payloads(12)
    got: list[tuple[int, Payload]] = []

    async def reader() -> None:
        got.extend(await read_all(store, rid, 5))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.sleep(0.05)  # the reader waits on an empty stream
        await store.append(rid, sent[:8])
        await store.append(rid, sent[8:])
        await store.finish(rid)
    assert got == list(enumerate(sent))[5:]


async def test_old_payloads_are_dropped_past_the_per_stream_bound(store: StreamStore) -> None:
    rid = uuid.uuid4().hex
    assert await store.create(rid, "openai")
    sent = payloads(300)  # 3000 bytes against a 1000-byte bound
    for i in range(0, 300, 10):  # a shared store may keep batches whole: bound ± one batch
        await store.append(rid, sent[i : i + 10])
    await store.finish(rid)
    info = await store.info(rid)
    assert info is not None and 190 <= info.first_seq <= 210
    kept = await read_all(store, rid, info.first_seq)
    assert kept == list(enumerate(sent))[info.first_seq :]


async def test_an_error_before_the_first_payload_is_raised_to_a_reader(store: StreamStore) -> None:
    rid = uuid.uuid4().hex
    assert await store.create(rid, "openai")
    await store.finish(rid, ContextLengthExceededError("too long", param="messages"))
    with pytest.raises(ContextLengthExceededError, match="too long"):
        await read_all(store, rid, 0)


async def test_unknown_and_removed_streams_are_none(store: StreamStore) -> None:
    rid = uuid.uuid4().hex
    assert await store.info(rid) is None
    assert await store.create(rid, "openai")
    assert not await store.create(rid, "openai")  # taken
    await store.remove(rid)
    assert await store.info(rid) is None


async def test_redis_store_raises_store_errors_when_redis_is_gone() -> None:
    from tokenwire.stores.redis_connection import check_reachable, connect
    from tokenwire.stores.redis_store import RedisStreamStore

    url = "redis://user:secret@127.0.0.1:1/0"
    with pytest.raises(StreamStoreError, match=r"127\.0\.0\.1:1") as caught:
        check_reachable(url)
    assert "secret" not in str(caught.value)
    store = RedisStreamStore(connect(url), max_stream_bytes=1000, ttl_seconds=5, done_seconds=5)
    with pytest.raises(StreamStoreError):
        await store.create("x", "openai")
    assert await read_all(store, "x", 0) == []  # a reader ends, never hangs


def test_serve_refuses_to_start_when_the_stream_store_is_unreachable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokenwire.cli import main

    monkeypatch.setenv("TOKENWIRE_STREAM_STORE", "redis://user:hunter2@127.0.0.1:1/0")
    assert main(["serve", "--backend", "echo", "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert "stream store at redis://user:***@127.0.0.1:1/0 is unreachable" in error
    assert "hunter2" not in error


async def test_redis_create_claimed_touches_claims_and_creates_in_one_step(
    redis_server: RedisServer,
) -> None:
    """What `touch`, `claim` and `create` do one after the other, each step only when the one
    before succeeded: the producer's setup before a stream's first payload."""
    from tokenwire.stores.redis_connection import connect
    from tokenwire.stores.redis_control import RedisStreamControl
    from tokenwire.stores.redis_store import RedisStreamStore

    client = connect(redis_server.url)
    control = RedisStreamControl(client, replica="one")
    other = RedisStreamControl(connect(redis_server.url), replica="two")
    store = RedisStreamStore(client, max_stream_bytes=1000, ttl_seconds=30, done_seconds=5)
    assert store.shares_control(control) and not store.shares_control(other)
    rid = uuid.uuid4().hex
    meta = {"owner": "one", "request": "{}", "generation": "stale"}
    claimed = await store.create_claimed(
        rid, "openai", meta, replica="one", lease_seconds=30, readers_seconds=30
    )
    generation = claimed[0]
    assert generation is not None and claimed == (generation, True)
    assert await control.present(rid)
    assert await control.renew(rid, generation, 30)  # the lease is this replica's
    assert not await other.renew(rid, generation, 30)
    fields = await client.hgetall(f"tokenwire:{{{rid}}}:meta")
    assert fields[b"generation"] == str(generation).encode()
    assert fields[b"dialect"] == b"openai" and fields[b"status"] == b"running"
    assert 0 < await client.pttl(f"tokenwire:{{{rid}}}:meta") <= 30_000
    await store.append(rid, payloads(3))
    await store.finish(rid)
    assert await read_all(store, rid, 0) == list(enumerate(payloads(3)))

    # The lease is held: nothing is created, nor the meta touched.
    again = await store.create_claimed(
        rid, "anthropic", {}, replica="two", lease_seconds=30, readers_seconds=30
    )
    assert again == (None, False)
    # The lease is free but the stream exists: claimed, not created.
    await control.release(rid, generation)
    taken = await store.create_claimed(
        rid, "anthropic", {}, replica="two", lease_seconds=30, readers_seconds=30
    )
    assert taken[0] is not None and taken[0] > generation and not taken[1]
    info = await store.info(rid)
    assert info is not None and info.dialect == "openai" and info.done

    gone = RedisStreamStore(
        connect("redis://127.0.0.1:1/0"), max_stream_bytes=1000, ttl_seconds=5, done_seconds=5
    )
    with pytest.raises(StreamStoreError):
        await gone.create_claimed(
            rid, "openai", {}, replica="one", lease_seconds=1, readers_seconds=1
        )
    await client.aclose()
    await other.client.aclose()


async def test_redis_writes_of_an_owner_that_lost_its_lease_are_refused(
    redis_server: RedisServer,
) -> None:
    """A producer that stalled past its lease while another replica adopted the stream: its
    next entry, token record and end are refused (fenced by the lease), the adopter's land."""
    from tokenwire.stores.redis_connection import connect
    from tokenwire.stores.redis_control import RedisStreamControl
    from tokenwire.stores.redis_store import RedisStreamStore

    def make() -> RedisStreamStore:
        client = connect(redis_server.url)
        return RedisStreamStore(client, max_stream_bytes=1 << 20, ttl_seconds=30, done_seconds=5)

    stale, adopter = make(), make()
    rid = uuid.uuid4().hex
    claimed = await stale.create_claimed(
        rid, "openai", {}, replica="one", lease_seconds=30, readers_seconds=30
    )
    assert claimed[1]
    stale.note_tokens(rid, b"r0")
    await stale.append(rid, payloads(2))
    # The owner's lease runs out while it stalls; another replica takes it and adopts.
    await adopter.client.delete(f"tokenwire:{{{rid}}}:owner")
    control = RedisStreamControl(adopter.client, replica="two")
    generation = await control.claim(rid, 30)
    assert generation is not None
    adopter.resume_at(rid, 2, f"two:{generation}")

    stale.note_tokens(rid, b"r1")
    with pytest.raises(StreamStoreError, match="FENCED"):
        await stale.append(rid, [Payload("stale")])
    with pytest.raises(StreamStoreError, match="FENCED"):
        await stale.finish(rid)
    adopter.note_tokens(rid, b"r2")
    await adopter.append(rid, [Payload("adopted")])
    await adopter.finish(rid)
    kept = [payload.data for _, payload in await read_all(adopter, rid, 0)]
    assert kept == [payload.data for payload in payloads(2)] + ["adopted"]
    assert await adopter.client.lrange(f"tokenwire:{{{rid}}}:tokens", 0, -1) == [b"r0", b"r2"]  # type: ignore[misc]
    await stale.client.aclose()
    await adopter.client.aclose()
