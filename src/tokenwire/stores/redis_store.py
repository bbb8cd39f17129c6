"""`RedisStreamStore`: resumable streams kept in Redis, so any replica serves a reconnect.

One Redis stream per stream, one entry per flush (the payloads that accumulated since the
last, packed by `redis_entries`) with the explicit id `<first payload number + 1>-0` (so payload numbers
survive trimming, a replay finds its entry with one `XREVRANGE`, and a second writer of the
same numbers is refused by Redis), then an end entry. A hash beside it holds the dialect, status, owner and the oldest kept number.
Every key of a stream expires `ttl_seconds` after its last write; a finished one after the
grace period. Needs `tokenwire[redis]`; nothing imports this module unless a URL is set.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenwire import errors
from tokenwire.errors import GenerationError, TokenwireError
from tokenwire.interfaces import Payload
from tokenwire.stores import redis_fence as fence
from tokenwire.stores.redis_connection import BLOCK_MS, key
from tokenwire.stores.redis_entries import pack, unpack
from tokenwire.stores.redis_writer import Command, GroupWriter
from tokenwire.stores.stream_store import StreamInfo, StreamStoreError

_READ_BATCH = 512
_REFRESH_SECONDS = 1.0  # a producing stream's TTL is refreshed at most this often


# A stream's setup in one round trip (`create_claimed`, before its first payload): the reader
# presence (`RedisStreamControl.touch`), the lease (its `_CLAIM`), then the meta hash
# (`create`), each step only if the one before succeeded, as three calls would. Three round
# trips were ~2 ms of a 15 ms echo stream.
_CREATE_CLAIMED = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
local generation = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if not redis.call('SET', KEYS[3], ARGV[1] .. ':' .. generation, 'NX', 'PX', ARGV[2]) then
  return {-generation, 0}
end
if redis.call('HSETNX', KEYS[4], 'dialect', ARGV[6]) == 0 then
  return {generation, 0}
end
redis.call('HSET', KEYS[4], 'generation', generation, unpack(ARGV, 7))
redis.call('PEXPIRE', KEYS[4], ARGV[5])
return {generation, 1}
"""


def _entry_id(seq: int) -> str:
    return f"{seq + 1}-0"


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0]) - 1


def _error_fields(error: TokenwireError) -> str:
    return json.dumps(
        {"type": type(error).__name__, "message": error.message, "param": error.param}
    )


def _error_from(text: bytes) -> TokenwireError:
    data = json.loads(text)
    kind = getattr(errors, str(data.get("type")), None)
    if not (isinstance(kind, type) and issubclass(kind, TokenwireError)):
        kind = GenerationError
    try:
        return kind(data["message"], param=data.get("param"))
    except TypeError:  # an error class with another signature (RateLimitError)
        return GenerationError(data["message"])


class RedisStreamStore:
    """Streams kept in Redis; `ttl_seconds` bounds how long a silent stream's keys live,
    `max_stream_bytes` how many payload bytes one stream keeps (oldest trimmed first)."""

    def __init__(
        self, client: Redis, *, max_stream_bytes: int, ttl_seconds: float, done_seconds: float
    ) -> None:
        self.client = client
        self.max_stream_bytes = max_stream_bytes
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.done_ms = max(1, int(done_seconds * 1000))
        # Sizes of what this process wrote, per stream it produces: trimming is by bytes.
        self._sizes: dict[str, deque[tuple[int, int]]] = {}
        self._next: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._refresh_at: dict[str, float] = {}  # monotonic time of the next TTL refresh
        # Failover's token records, written in the next append's pipeline (before its entry).
        self._tokens: dict[str, list[bytes]] = {}
        self._tokens_keyed: set[str] = set()  # streams whose tokens key has a TTL
        # The lease token (`<replica>:<generation>`) each write of a stream is fenced by.
        self._owner: dict[str, str] = {}
        # Appends of every stream share round trips (see `redis_writer`).
        self.writer = GroupWriter(client)
        self._create_claimed: Any = client.register_script(_CREATE_CLAIMED)

    async def create(
        self, request_id: str, dialect: str, meta: Mapping[str, str] | None = None
    ) -> bool:
        fields = {"dialect": dialect, "status": "running", "first": "0", **(meta or {})}
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hsetnx(key(request_id, "meta"), "dialect", dialect)
                pipe.hset(key(request_id, "meta"), mapping=fields)
                pipe.pexpire(key(request_id, "meta"), self.ttl_ms)
                created, *_ = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"create {request_id!r}: {exc}") from exc
        if not created:
            return False  # the hash was there: another stream has this id
        self._created(request_id)
        if meta is not None and "owner" in meta and "generation" in meta:
            self._owner[request_id] = f"{meta['owner']}:{meta['generation']}"
        return True

    def _created(self, request_id: str) -> None:
        self._sizes[request_id] = deque()
        self._next[request_id] = 0
        self._bytes[request_id] = 0

    def shares_control(self, control: object) -> bool:
        # A control on this very client (`RedisStreamControl`; imported here it would make a
        # cycle) keeps leases and presence under the same `key`s as this store.
        return getattr(control, "client", None) is self.client

    async def create_claimed(
        self,
        request_id: str,
        dialect: str,
        meta: Mapping[str, str],
        *,
        replica: str,
        lease_seconds: float,
        readers_seconds: float,
    ) -> tuple[int | None, bool]:
        fields = {"dialect": dialect, "status": "running", "first": "0", **meta}
        fields.pop("generation", None)  # the script writes the one it claimed
        lease_ms = _ms(lease_seconds)
        try:
            generation, created = await self._create_claimed(
                keys=[
                    key(request_id, "readers"),
                    key(request_id, "generation"),
                    key(request_id, "owner"),
                    key(request_id, "meta"),
                ],
                args=[
                    replica,
                    lease_ms,
                    lease_ms + 60_000,  # the counter outlives the lease (as `claim`'s)
                    _ms(readers_seconds),
                    self.ttl_ms,
                    dialect,
                    *_flat(fields),
                ],
            )
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"create {request_id!r}: {exc}") from exc
        if int(generation) <= 0:
            return None, False
        if created:
            self._created(request_id)
            self._owner[request_id] = f"{replica}:{int(generation)}"
        return int(generation), bool(created)

    def note_tokens(self, request_id: str, record: bytes) -> None:
        """Write `record` (failover's token ids of the payloads about to be appended) in the
        next `append`'s pipeline, before its entry: no round trip of its own, and never
        stored after the payloads it describes (see `tokenwire.stores.redis_failover`)."""
        self._tokens.setdefault(request_id, []).append(record)

    def resume_at(self, request_id: str, seq: int, owner: str | None = None) -> None:
        """This process now produces `request_id` (adopted after its owner died) under the
        lease token `owner`: its next payload is number `seq`. Trimming counts only what this
        process writes."""
        if owner is not None:
            self._owner[request_id] = owner
        self._sizes[request_id] = deque()
        self._next[request_id] = seq
        self._bytes[request_id] = 0
        self._refresh_at.pop(request_id, None)  # its first write here refreshes the TTLs
        self._tokens_keyed.discard(request_id)

    async def append(self, request_id: str, payloads: Sequence[Payload]) -> None:
        if not payloads:
            return
        sizes = self._sizes.setdefault(request_id, deque())
        seq = self._next.get(request_id, 0)
        stream = key(request_id, "stream")
        # One entry per batch (what accumulated since the last flush): its id is its first
        # payload's, so a replay finds the entry that holds any number.
        fields = pack(payloads)
        commands: list[Command] = []
        now = time.monotonic()
        refresh = now >= self._refresh_at.get(request_id, 0.0)
        records = self._tokens.pop(request_id, None)
        flat = _flat(fields)
        owner = self._owner.get(request_id)
        if owner is not None:  # failover's token ids of these payloads, stored before them
            commands.append(
                fence.entry(
                    key(request_id, "owner"),
                    key(request_id, "tokens"),
                    stream,
                    owner,
                    records or (),
                    _entry_id(seq),
                    flat,
                )
            )
        else:  # not produced under a lease of this process's (a test's store)
            if records:
                commands.append(("RPUSH", key(request_id, "tokens"), *records))
            commands.append(("XADD", stream, _entry_id(seq), *flat))
        if records and (refresh or request_id not in self._tokens_keyed):
            commands.append(("PEXPIRE", key(request_id, "tokens"), self.ttl_ms))
            self._tokens_keyed.add(request_id)
        size = sum(len(payload.data) for payload in payloads)
        sizes.append((seq, size))
        self._bytes[request_id] = self._bytes.get(request_id, 0) + size
        first = None
        # Whole entries drop, oldest first: the bound holds to within one batch.
        while self._bytes[request_id] > self.max_stream_bytes and len(sizes) > 1:
            _, dropped = sizes.popleft()
            self._bytes[request_id] -= dropped
            first = sizes[0][0]
        if first is not None:
            commands.append(("XTRIM", stream, "MINID", _entry_id(first)))
            commands.append(("HSET", key(request_id, "meta"), "first", str(first)))
        # The TTL is refreshed on the first write and then once a second, not on every flush
        # (two PEXPIREs per 5 ms flush were a third of the commands sent); a key that XADD
        # recreated after a Redis restart gets its TTL back within a second.
        if refresh:
            commands.append(("PEXPIRE", stream, self.ttl_ms))
            commands.append(("PEXPIRE", key(request_id, "meta"), self.ttl_ms))
            if request_id in self._tokens_keyed and not records:
                commands.append(("PEXPIRE", key(request_id, "tokens"), self.ttl_ms))
            self._refresh_at[request_id] = now + min(_REFRESH_SECONDS, self.ttl_ms / 4000)
        # The numbers advance now: the commands go out even if this caller is cancelled.
        self._next[request_id] = seq + len(payloads)
        try:
            results = await self.writer.write(commands)
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"append to {request_id!r}: {exc}") from exc
        refused = [result for result in results if isinstance(result, Exception)]
        if refused or len(results) != len(commands):
            raise StreamStoreError(f"append to {request_id!r}: {refused or 'no answer'}")

    async def finish(self, request_id: str, error: TokenwireError | None = None) -> None:
        self._tokens.pop(request_id, None)
        seq = self._next.pop(request_id, 0)
        self._sizes.pop(request_id, None)
        self._bytes.pop(request_id, None)
        self._refresh_at.pop(request_id, None)
        self._tokens_keyed.discard(request_id)
        owner = self._owner.pop(request_id, None)
        fields = {"end": "done"} if error is None else {"end": "error", "err": _error_fields(error)}
        stream, meta = key(request_id, "stream"), key(request_id, "meta")
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                if owner is not None:
                    end = fence.end(
                        key(request_id, "owner"), stream, meta, owner, fields["end"],
                        _entry_id(seq), _flat(fields),
                    )  # fmt: skip
                    pipe.execute_command(*end)
                else:
                    pipe.xadd(stream, fields, id=_entry_id(seq))  # type: ignore[arg-type]
                    pipe.hset(meta, "status", fields["end"])
                pipe.pexpire(stream, self.done_ms)
                pipe.pexpire(meta, self.done_ms)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"finish {request_id!r}: {exc}") from exc

    async def info(self, request_id: str) -> StreamInfo | None:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(key(request_id, "meta"))
                pipe.exists(key(request_id, "owner"))
                meta, owned = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"info {request_id!r}: {exc}") from exc
        if not meta:
            return None
        done = meta.get(b"status", b"running") != b"running"
        if not done and not owned:
            return None  # its producer is gone and nobody adopted it: it cannot go on
        return StreamInfo(
            request_id, meta[b"dialect"].decode(), int(meta.get(b"first", b"0")), done
        )

    async def read(self, request_id: str, start: int) -> AsyncIterator[tuple[int, Payload]]:
        stream = key(request_id, "stream")
        try:
            # The entry holding payload `start` may begin before it (entries are batches).
            holding: list[Any] = await self.client.xrevrange(
                stream, max=_entry_id(start), min="-", count=1
            )
        except (RedisError, OSError):
            return
        low = holding[0][0].decode() if holding else _entry_id(start)
        last = ""
        while True:
            try:
                entries: list[Any] = await self.client.xrange(stream, min=low, count=_READ_BATCH)
            except (RedisError, OSError):
                return
            items, end = _batch(entries, start)
            for item in items:
                yield item
            if end is not None:
                _raise_if_failed(end, start)
                return
            if entries:
                last = entries[-1][0].decode()
                low = "(" + last
            if len(entries) < _READ_BATCH:
                break
        # Nothing at or before `start` yet (the first flush is still on its way): read live
        # entries from the very first, since an entry after "<start>-0" may hold `start`.
        last = last or (holding[0][0].decode() if holding else "0-0")
        while True:
            try:
                answer: list[Any] = await self.client.xread({stream: last}, block=BLOCK_MS)
                if not answer:
                    async with self.client.pipeline(transaction=False) as pipe:
                        pipe.exists(key(request_id, "owner"))
                        pipe.hget(key(request_id, "meta"), "status")
                        owned, status = await pipe.execute()
                    if not owned and status in (None, b"running"):
                        return  # the producer is gone and will write no end
                    continue
            except (RedisError, OSError):
                return
            items, end = _batch(answer[0][1], start)
            for item in items:
                yield item
            if end is not None:
                _raise_if_failed(end, start)
                return
            last = answer[0][1][-1][0].decode()

    async def remove(self, request_id: str) -> None:
        self._tokens.pop(request_id, None)
        self._owner.pop(request_id, None)
        self._next.pop(request_id, None)
        self._sizes.pop(request_id, None)
        self._bytes.pop(request_id, None)
        self._refresh_at.pop(request_id, None)
        self._tokens_keyed.discard(request_id)
        try:
            await self.client.delete(key(request_id, "stream"), key(request_id, "meta"))
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"remove {request_id!r}: {exc}") from exc


def _flat(fields: Mapping[str, str]) -> list[str]:
    """`fields` as Redis takes them in a command: name, value, name, value, …"""
    return [x for pair in fields.items() for x in pair]


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _payloads(entry_id: bytes, fields: dict[bytes, bytes], start: int) -> list[tuple[int, Payload]]:
    first = _seq(entry_id)
    return [(first + i, payload) for i, payload in enumerate(unpack(fields)) if first + i >= start]


def _batch(
    entries: list[Any], start: int
) -> tuple[list[tuple[int, Payload]], dict[bytes, bytes] | None]:
    """The payloads numbered `start` or later in a batch of read `entries`, up to the
    stream's end entry, and that end entry's fields (None: the stream goes on)."""
    items: list[tuple[int, Payload]] = []
    for entry_id, fields in entries:
        if b"end" in fields:
            return items, fields
        items += _payloads(entry_id, fields, start)
    return items, None


def _raise_if_failed(fields: dict[bytes, bytes], start: int) -> None:
    if fields[b"end"] == b"error" and start == 0:
        raise _error_from(fields[b"err"])
