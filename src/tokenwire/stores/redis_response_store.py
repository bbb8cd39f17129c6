"""`RedisResponseStore`: stored Responses-API responses shared by every replica through Redis.

The `ResponseStore` Protocol is synchronous (the dialect stores a response while it renders
the last event), so this store answers it from a view in this process and syncs the view
with Redis at the points where the server can wait (`SyncsResponses`):

- `flush` sends the writes made so far; a response's last event is sent only after it, so a
  client that reads `response.completed` and then asks another replica finds it there;
- `load` reads one response from Redis into the view before a request names it
  (`GET`/`DELETE /v1/responses/{id}`, `previous_response_id`).

Redis is the truth while it answers: a response missing there (deleted on another replica,
expired) is missing here too. While Redis is unreachable each replica serves what it wrote
itself, with a warning and `tokenwire_stream_store_errors_total` (and Redis is left alone for a
second after each failure); a response it does not hold is unknown then, not missing: `load`
raises `ResponseStoreUnavailableError` (a 503), since another replica may well have stored it.
One key per response (`tokenwire:response:{id}`, JSON), expiring `ttl_seconds` after it was
last written, as in memory. Needs `tokenwire[redis]`; imported only when a URL is set.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenwire.requests import ChatMessage, ToolCall
from tokenwire.stores.response_store import (
    MemoryResponseStore,
    ResponseStoreUnavailableError,
    StoredResponse,
)

logger = logging.getLogger("tokenwire.responses")

_SYNC_SECONDS = 5.0  # a write or read that takes longer is given up (and counted)
_RETRY_SECONDS = 1.0  # after a failure, Redis is left alone this long


def response_key(response_id: str) -> str:
    return f"tokenwire:response:{{{response_id}}}"


def encode(stored: StoredResponse) -> str:
    return json.dumps(
        {
            "response": stored.response,
            "turns": [asdict(turn) for turn in stored.turns],
            "request_id": stored.request_id,
        },
        ensure_ascii=False,
    )


def decode(text: bytes | str) -> StoredResponse:
    data = json.loads(text)
    turns = tuple(
        ChatMessage(
            turn["role"],
            turn["content"],
            tuple(ToolCall(**call) for call in turn.get("tool_calls", ())),
            turn.get("tool_call_id"),
            turn.get("name"),
        )
        for turn in data["turns"]
    )
    return StoredResponse(data["response"], turns, str(data["request_id"]))


class RedisResponseStore:
    """Stored responses in Redis, answered from `view` (a bounded in-process store)."""

    def __init__(
        self,
        client: Redis,
        view: MemoryResponseStore,
        count_error: Callable[[str], None] = lambda operation: None,
    ) -> None:
        self.client = client
        self.view = view
        self.ttl_ms = max(1, int(view.ttl_seconds * 1000))
        self.count_error = count_error  # the stream store's error counter, by operation
        # Writes not yet sent, in order: (response id, JSON or None for a delete).
        self._pending: list[tuple[str, str | None]] = []
        self._sending = anyio.Lock()
        # After a failure Redis is not asked again for a while: each attempt at a Redis that
        # is down costs up to the connect timeout, and the last event of a response waits.
        self._down_until = 0.0

    def put(self, stored: StoredResponse) -> bool:
        if not self.view.put(stored):
            return False
        self._pending.append((stored.id, encode(stored)))
        return True

    def get(self, response_id: str) -> StoredResponse | None:
        return self.view.get(response_id)

    def delete(self, response_id: str) -> bool:
        self._pending.append((response_id, None))
        return self.view.delete(response_id)

    async def flush(self) -> bool:
        """Send the writes made so far (in order, one round trip); whether they landed.
        Never raises."""
        async with self._sending:
            batch, self._pending = self._pending, []
            if not batch:
                return True
            if self._down():
                self.count_error("response write")
                return False
            try:
                with anyio.fail_after(_SYNC_SECONDS):
                    async with self.client.pipeline(transaction=False) as pipe:
                        for response_id, text in batch:
                            if text is None:
                                pipe.delete(response_key(response_id))
                            else:
                                pipe.set(response_key(response_id), text, px=self.ttl_ms)
                        await pipe.execute()
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed("response write", exc)
                return False
            return True

    async def load(self, response_id: str, *, held_here: bool = True) -> None:
        """Bring `response_id` as Redis has it into the view (gone there: gone here).

        Raises:
            ResponseStoreUnavailableError: Redis cannot be asked, and the view does not hold
                the response (or `held_here` is False).
        """
        if self._down():
            self.count_error("response read")
            self._unknown(response_id, held_here)
            return
        try:
            with anyio.fail_after(_SYNC_SECONDS):
                await self.flush()  # this replica's own writes first
                text: Any = await self.client.get(response_key(response_id))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("response read", exc)
            self._unknown(response_id, held_here)
            return  # serve what this replica holds
        if text is None:
            self.view.delete(response_id)
            return
        try:
            self.view.put(decode(text))
        except (ValueError, KeyError, TypeError) as exc:
            self._failed("response read", exc)

    def _unknown(self, response_id: str, held_here: bool) -> None:
        """Raise unless what this replica holds may answer for `response_id`."""
        if held_here and self.view.get(response_id) is not None:
            return
        raise ResponseStoreUnavailableError(
            f"Response {response_id[:100]!r} cannot be looked up now: this replica does not "
            "hold it, and the response store shared by every replica is unreachable; try "
            "again."
            if held_here
            else f"Response {response_id[:100]!r} cannot be changed now: the response store "
            "shared by every replica is unreachable; try again."
        )

    def _down(self) -> bool:
        return anyio.current_time() < self._down_until

    def _failed(self, operation: str, exc: Exception) -> None:
        self._down_until = anyio.current_time() + _RETRY_SECONDS
        self.count_error(operation)
        logger.warning(
            "response store: %s failed; stored responses are served by this replica only (%s)",
            operation,
            exc,
        )


def shared_response_store(
    url: str, view: MemoryResponseStore, count_error: Callable[[str], None]
) -> RedisResponseStore:
    """A shared store on the Redis at `url` (its client imported only here)."""
    from tokenwire.stores.redis_connection import connect

    return RedisResponseStore(connect(url), view, count_error)
