"""The Redis response store on its own: what it writes, its TTL, and a Redis that is gone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._support.scaleout import RedisServer, running_redis
from tokenwire.requests import ChatMessage, ToolCall
from tokenwire.stores.response_store import (
    MemoryResponseStore,
    ResponseStoreUnavailableError,
    StoredResponse,
    SyncsResponses,
)

pytestmark = pytest.mark.anyio

STORED = StoredResponse(
    {"id": "resp_1", "object": "response", "status": "completed", "output": []},
    (
        ChatMessage("user", "héllo"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "f", '{"a":1}'),)),
        ChatMessage("tool", "42", tool_call_id="c1", name="f"),
    ),
    "req-1",
)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def view() -> MemoryResponseStore:
    return MemoryResponseStore(ttl_seconds=30, max_response_bytes=1 << 20, max_total_bytes=1 << 20)


async def test_a_response_written_by_one_store_loads_whole_in_another(
    redis_server: RedisServer,
) -> None:
    from tokenwire.stores.redis_response_store import response_key, shared_response_store

    errors: list[str] = []
    writer = shared_response_store(redis_server.url, view(), errors.append)
    reader = shared_response_store(redis_server.url, view(), errors.append)
    assert isinstance(writer, SyncsResponses)
    assert writer.put(STORED)
    assert reader.get("resp_1") is None
    await writer.flush()
    await reader.load("resp_1")
    assert reader.get("resp_1") == STORED
    assert 0 < await writer.client.pttl(response_key("resp_1")) <= 30_000
    assert writer.delete("resp_1")
    await writer.flush()
    await reader.load("resp_1")  # deleted there: gone here too
    assert reader.get("resp_1") is None
    assert errors == []
    await writer.client.aclose()
    await reader.client.aclose()


async def test_without_redis_a_replica_serves_what_it_stored_and_counts_the_failures() -> None:
    from tokenwire.stores.redis_response_store import shared_response_store

    errors: list[str] = []
    store = shared_response_store("redis://127.0.0.1:1/0", view(), errors.append)
    assert store.put(STORED)
    assert await store.flush() is False  # never raises
    await store.load("resp_1")
    assert store.get("resp_1") == STORED
    assert errors == ["response write", "response read"]
    # Left alone for a second after a failure (each try at a Redis that is down may cost the
    # connect timeout): counted, not tried — the client is not touched.
    store.client = None  # type: ignore[assignment]
    assert store.put(STORED)
    assert await store.flush() is False
    await store.load("resp_1")
    assert store.get("resp_1") == STORED
    assert errors[2:] == ["response write", "response read"]


async def test_without_redis_a_response_not_held_here_is_unknown_not_missing() -> None:
    """Another replica may have stored it: `load` raises a 503, where `get` would say None."""
    from tokenwire.stores.redis_response_store import shared_response_store

    errors: list[str] = []
    store = shared_response_store("redis://127.0.0.1:1/0", view(), errors.append)
    with pytest.raises(ResponseStoreUnavailableError) as raised:
        await store.load("resp_elsewhere")
    assert raised.value.status_code == 503 and "unreachable" in raised.value.message
    with pytest.raises(ResponseStoreUnavailableError):  # also while Redis is left alone
        await store.load("resp_elsewhere")
    # Held here: served, unless the caller must have Redis's own answer (a delete).
    assert store.put(STORED)
    await store.load("resp_1")
    with pytest.raises(ResponseStoreUnavailableError):
        await store.load("resp_1", held_here=False)
    assert errors == ["response read"] * 4
    await store.client.aclose()
