"""Where stored Responses-API responses are kept: the `ResponseStore` Protocol and its
in-memory form.

A stored response is a value: the `response` object as the API returns it, the conversation
it continues (input turns, then its output as assistant turns) for `previous_response_id`,
and the id of the request that produced it, under which its stream's payloads sit in the
`StreamStore` (a background response is replayed from there). The in-memory store serves
one replica; a shared store implements the same Protocol.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tokenwire.errors import ServiceUnavailableError
from tokenwire.requests import ChatMessage


class ResponseStoreUnavailableError(ServiceUnavailableError):
    """A shared response store cannot be asked, and this replica does not hold the response:
    whether it exists cannot be known, so the answer is a 503 (a 404 would claim it does not)."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One stored response. `turns` are the conversation so far, ready to be prepended to the
    next request's input (the response's `instructions` are not among them, as the API
    specifies for `previous_response_id`)."""

    response: Mapping[str, Any]
    turns: tuple[ChatMessage, ...]
    request_id: str

    @property
    def id(self) -> str:
        return str(self.response["id"])

    @property
    def status(self) -> str:
        return str(self.response.get("status"))

    @property
    def background(self) -> bool:
        return bool(self.response.get("background"))


class ResponseStore(Protocol):
    """Where stored responses are kept, by response id."""

    def put(self, stored: StoredResponse) -> bool:
        """Keep (or replace) `stored`; False when it is larger than one response may be."""
        ...

    def get(self, response_id: str) -> StoredResponse | None: ...

    def delete(self, response_id: str) -> bool:
        """Forget a response; False when it was not kept."""
        ...


def _size(stored: StoredResponse) -> int:
    turns = sum(
        len(t.content) + sum(len(c.arguments) + len(c.name) for c in t.tool_calls)
        for t in stored.turns
    )
    return len(json.dumps(stored.response, ensure_ascii=False)) + turns


class MemoryResponseStore:
    """Responses in this process: each kept `ttl_seconds` after it was last written, and at
    most `max_total_bytes` in all, the least recently used dropping first."""

    def __init__(
        self,
        ttl_seconds: float,
        max_response_bytes: int,
        max_total_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_response_bytes = max_response_bytes
        self.max_total_bytes = max_total_bytes
        self.clock = clock
        # id → (entry, size, expires at); order is recency of use.
        self.entries: OrderedDict[str, tuple[StoredResponse, int, float]] = OrderedDict()
        self.bytes = 0

    def put(self, stored: StoredResponse) -> bool:
        size = _size(stored)
        self.delete(stored.id)
        if size > self.max_response_bytes:
            return False
        self._expire()
        while self.entries and self.bytes + size > self.max_total_bytes:
            _, (_, dropped, _) = self.entries.popitem(last=False)
            self.bytes -= dropped
        self.entries[stored.id] = (stored, size, self.clock() + self.ttl_seconds)
        self.bytes += size
        return True

    def get(self, response_id: str) -> StoredResponse | None:
        entry = self.entries.get(response_id)
        if entry is None:
            return None
        if entry[2] <= self.clock():
            self.delete(response_id)
            return None
        self.entries.move_to_end(response_id)
        return entry[0]

    def delete(self, response_id: str) -> bool:
        entry = self.entries.pop(response_id, None)
        if entry is None:
            return False
        self.bytes -= entry[1]
        return True

    def _expire(self) -> None:
        # From the least recently used end only: O(1) per write, and an expired entry left
        # behind a fresher one is refused by `get` and still counts against the byte bound.
        now = self.clock()
        while self.entries:
            response_id, (_, _, expires) = next(iter(self.entries.items()))
            if expires > now:
                return
            self.delete(response_id)


@dataclass(frozen=True, slots=True)
class ResponseStoreConfig:
    """Attributes:
    ttl_seconds: how long a stored response stays retrievable (and continuable with
        `previous_response_id`) after it was last written.
    max_response_bytes: the largest response (object and conversation) kept; a larger one
        is served but not stored.
    max_total_bytes: bytes kept across responses; past it the least recently used go first.
    """

    ttl_seconds: float = 3600.0
    max_response_bytes: int = 4 << 20
    max_total_bytes: int = 256 << 20

    def memory_store(self) -> MemoryResponseStore:
        """An in-memory store bounded as configured."""
        return MemoryResponseStore(self.ttl_seconds, self.max_response_bytes, self.max_total_bytes)


@runtime_checkable
class SyncsResponses(Protocol):
    """A `ResponseStore` shared with other replicas: its synchronous methods answer from this
    process, and these sync it where the server can wait."""

    async def flush(self) -> bool:
        """Send the writes made so far; whether they landed. Never raises (a failure is
        logged and counted, and those writes are not retried)."""
        ...

    async def load(self, response_id: str, *, held_here: bool = True) -> None:
        """Bring `response_id` as the shared store has it into this process's answers.

        While the shared store cannot be asked, what this process holds answers
        (`held_here`); a response it does not hold is unknown, not missing.

        Raises:
            ResponseStoreUnavailableError: the shared store cannot be asked, and this process
                does not hold the response (or `held_here` is False: the caller must know
                the shared store's answer, as a delete must).
        """
        ...
