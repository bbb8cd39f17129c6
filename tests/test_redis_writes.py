"""The Redis store's write path: entry packing, and appends of many streams sharing round
trips (against a real redis-server)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from tests._support.scaleout import RedisServer, running_redis
from tokenwire.interfaces import Payload
from tokenwire.stores.redis_entries import count, is_payloads, pack, unpack
from tokenwire.stores.stream_store import StreamStoreError

pytestmark = pytest.mark.anyio


def _stored(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {name.encode(): value.encode() for name, value in fields.items()}


@pytest.mark.parametrize(
    "payloads",
    [
        [Payload('{"a":"é"}'), Payload("[DONE]", sentinel=True)],
        [Payload("x", "message_start"), Payload("", None), Payload("ü€😀,\n", "delta", True)],
        [Payload("")],
        [Payload('{"t":"' + "q" * 5000 + '"}', "e")] * 3,
    ],
)
def test_entries_unpack_to_the_payloads_packed(payloads: list[Payload]) -> None:
    fields = _stored(pack(payloads))
    assert unpack(fields) == payloads
    assert count(fields) == len(payloads) and is_payloads(fields)


def test_plain_payloads_carry_no_event_or_sentinel_fields() -> None:
    assert set(pack([Payload("{}"), Payload("{}")])) == {"d", "l"}


def test_entries_of_the_earlier_json_format_are_still_read() -> None:
    old = {b"p": json.dumps([["{}", None, False], ["[DONE]", "done", True]]).encode()}
    assert unpack(old) == [Payload("{}"), Payload("[DONE]", "done", True)]
    assert count(old) == 2 and is_payloads(old) and not is_payloads({b"end": b"done"})


def test_a_malformed_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="add up"):
        unpack({b"d": b"abc", b"l": b"1,1"})


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[object]:
    from tokenwire.stores.redis_connection import connect
    from tokenwire.stores.redis_store import RedisStreamStore

    client = connect(redis_server.url)
    yield RedisStreamStore(client, max_stream_bytes=1 << 20, ttl_seconds=30, done_seconds=5)
    await client.aclose()


async def test_concurrent_streams_share_round_trips_and_keep_their_order(store: object) -> None:
    from tokenwire.stores.redis_store import RedisStreamStore

    assert isinstance(store, RedisStreamStore)
    streams = [uuid.uuid4().hex for _ in range(32)]
    sent = {rid: [Payload(f'{{"s":"{rid}","n":{n}}}') for n in range(40)] for rid in streams}
    for rid in streams:
        assert await store.create(rid, "openai")
    before = store.writer.writes

    async def produce(rid: str) -> None:
        for i in range(0, 40, 4):  # ten flushes per stream, each awaited like the flusher does
            await store.append(rid, sent[rid][i : i + 4])

    async with anyio.create_task_group() as tg:
        for rid in streams:
            tg.start_soon(produce, rid)
    appends = 32 * 10
    assert store.writer.writes - before < appends / 4  # gathered, not one round trip each
    for rid in streams:
        await store.finish(rid)
        got = [item async for item in store.read(rid, 0)]
        assert got == list(enumerate(sent[rid]))


async def test_a_refused_append_fails_its_own_stream_only(store: object) -> None:
    from tokenwire.stores.redis_connection import key
    from tokenwire.stores.redis_store import RedisStreamStore

    assert isinstance(store, RedisStreamStore)
    good, bad = uuid.uuid4().hex, uuid.uuid4().hex
    for rid in (good, bad):
        assert await store.create(rid, "openai")
    # Another writer already wrote payload 0 of `bad`: Redis refuses the same entry id again.
    await store.client.xadd(key(bad, "stream"), {"d": "x", "l": "1"}, id="1-0")
    outcome: dict[str, BaseException | None] = {}

    async def append(rid: str) -> None:
        try:
            await store.append(rid, [Payload("{}")])
            outcome[rid] = None
        except StreamStoreError as exc:
            outcome[rid] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(append, bad)
        tg.start_soon(append, good)
    assert outcome[good] is None
    assert isinstance(outcome[bad], StreamStoreError)


async def test_appends_fail_with_a_store_error_when_redis_is_gone() -> None:
    from tokenwire.stores.redis_connection import connect
    from tokenwire.stores.redis_store import RedisStreamStore

    client = connect("redis://127.0.0.1:1/0")
    store = RedisStreamStore(client, max_stream_bytes=1000, ttl_seconds=5, done_seconds=5)
    failures = 0

    async def append(rid: str) -> None:
        nonlocal failures
        with pytest.raises(StreamStoreError):
            await store.append(rid, [Payload("{}")])
        failures += 1

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(append, f"s{n}")
    assert failures == 5
