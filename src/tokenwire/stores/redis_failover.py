"""What a replica needs from Redis to continue a stream whose owner died (failover).

Beside the stream's payloads (`redis_store`), its producer keeps:
- a list `tokens`: one element per write, pushed in the same pipeline as that write's
  entry and before it (`RedisStreamStore.note_tokens`), so no payload is ever stored without
  the ids that made it (`token_record`): per group, the token ids of one event and the
  payload number after that event's payloads, plus once the progress payloads before the
  first event;
- in the meta hash: the request's body, path parameters, the exchange's identity (e.g.
  OpenAI's `created`), transport, whether progress was asked for, and the deadline.

A group counts only when all its payloads were stored (`end` <= the payloads kept): a write
cut short by the owner's death leaves ids that the continuation generates again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenwire.interfaces import Payload
from tokenwire.stores.redis_connection import key
from tokenwire.stores.redis_entries import count, is_payloads, unpack
from tokenwire.stores.stream_store import StreamStoreError
from tokenwire.stores.token_record import decode


@dataclass(frozen=True, slots=True)
class Orphan:
    """A running stream without an owner, as its dead owner left it."""

    meta: dict[str, str]
    groups: tuple[tuple[int, ...], ...]  # the events' token ids whose payloads were all stored
    progress: int  # progress payloads before the first event's
    next_seq: int  # the number of the next payload


async def forget(client: Redis, request_id: str) -> None:
    """Drop a stream's tokens once it ended (nobody continues an ended stream)."""
    try:
        await client.delete(key(request_id, "tokens"))
    except (RedisError, OSError) as exc:
        raise StreamStoreError(f"forget tokens of {request_id!r}: {exc}") from exc


async def orphaned(client: Redis, request_id: str) -> bool:
    """Whether the stream is known, not ended, and nobody holds its lease."""
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.hget(key(request_id, "meta"), "status")
            pipe.exists(key(request_id, "owner"))
            status, owned = await pipe.execute()
    except (RedisError, OSError) as exc:
        raise StreamStoreError(f"orphaned {request_id!r}: {exc}") from exc
    return status == b"running" and not owned


async def load_orphan(client: Redis, request_id: str) -> Orphan | None:
    """The state a continuation starts from; None when the stream cannot be continued (it
    ended, or it was not recorded for failover)."""
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(key(request_id, "meta"))
            pipe.lrange(key(request_id, "tokens"), 0, -1)
            pipe.xrevrange(key(request_id, "stream"), count=1)
            raw, records, last = await pipe.execute()
    except (RedisError, OSError) as exc:
        raise StreamStoreError(f"load {request_id!r}: {exc}") from exc
    meta = {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}
    if meta.get("status") != "running" or "body" not in meta:
        return None
    next_seq = 0
    if last:
        entry_id, fields = last[0]
        if b"end" in fields:
            return None
        next_seq = int(entry_id.split(b"-", 1)[0]) - 1 + count(fields)
    groups: list[tuple[int, ...]] = []
    progress = 0
    for raw_record in records:
        record = decode(raw_record)
        if record.progress is not None:
            progress = record.progress
        for end, ids in record.groups:
            if end > next_seq:
                return Orphan(meta, tuple(groups), progress, next_seq)
            groups.append(ids)
    return Orphan(meta, tuple(groups), progress, next_seq)


async def kept_payloads(client: Redis, request_id: str, stop: int) -> dict[int, Payload]:
    """The stored payloads numbered below `stop` (those not trimmed), to check a replay by."""
    try:
        entries: list[Any] = await client.xrange(key(request_id, "stream"))
    except (RedisError, OSError) as exc:
        raise StreamStoreError(f"read {request_id!r}: {exc}") from exc
    kept: dict[int, Payload] = {}
    for entry_id, fields in entries:
        if not is_payloads(fields):
            continue
        first = int(entry_id.split(b"-", 1)[0]) - 1
        for i, payload in enumerate(unpack(fields)):
            if first + i < stop:
                kept[first + i] = payload
    return kept
