"""The in-memory response store: kept for its TTL, bounded in bytes, least recently used first."""

from __future__ import annotations

from tokenwire.requests import ChatMessage
from tokenwire.stores.response_store import MemoryResponseStore, StoredResponse


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stored(response_id: str, text: str = "x") -> StoredResponse:
    return StoredResponse(
        {"id": response_id, "status": "completed"}, (ChatMessage("user", text),), "req_1"
    )


def test_a_response_expires_after_its_ttl() -> None:
    clock = Clock()
    store = MemoryResponseStore(10, 1000, 10_000, clock=clock)
    assert store.put(stored("a"))
    clock.now = 9.9
    assert store.get("a") is not None
    clock.now = 10.0
    assert store.get("a") is None and store.bytes == 0


def test_the_least_recently_used_goes_first_when_bytes_run_out() -> None:
    store = MemoryResponseStore(100, 1000, 230, clock=Clock())  # three of 74 bytes
    for name in "abc":
        assert store.put(stored(name, "y" * 40))
    assert store.get("a") is not None  # now b is the least recently used
    store.put(stored("d", "y" * 40))
    assert store.get("b") is None
    assert all(store.get(n) is not None for n in "acd")
    assert store.bytes <= 230


def test_an_oversized_response_is_not_kept_and_replacing_frees_bytes() -> None:
    store = MemoryResponseStore(100, 100, 1000, clock=Clock())
    assert not store.put(stored("big", "z" * 200))
    assert store.get("big") is None and store.bytes == 0
    store.put(stored("a"))
    before = store.bytes
    store.put(stored("a"))
    assert store.bytes == before
    assert store.delete("a") and not store.delete("a") and store.bytes == 0
