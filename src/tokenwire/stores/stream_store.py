"""Where resumable streams keep their payloads: the `StreamStore` Protocol and its settings.

A stream is kept as rendered payloads, not events: replaying payloads is what makes the ids
and bytes a reconnecting client sees identical to those it would have seen. Payload `n` is
the stream's `n`-th (its SSE id is `<request id>:<n>`). `MemoryStreamStore` serves one
replica; `RedisStreamStore` (`tokenwire[redis]`) serves every replica that shares a Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tokenwire.errors import TokenwireError
from tokenwire.interfaces import Payload


class StreamStoreError(Exception):
    """The store could not be reached or answered wrongly; the stream goes on unresumable."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a store knows of one stream: the dialect that rendered it (a reconnect is framed
    for it), the oldest payload number still kept, and whether it ended."""

    request_id: str
    dialect: str
    first_seq: int
    done: bool


class StreamStore(Protocol):
    """Where resumable streams keep their payloads. Every method is I/O for a shared store."""

    async def create(
        self, request_id: str, dialect: str, meta: Mapping[str, str] | None = None
    ) -> bool:
        """Start keeping a stream; False when the store is full or the id is taken.

        Raises:
            StreamStoreError: the store cannot be reached.
        """
        ...

    async def append(self, request_id: str, payloads: Sequence[Payload]) -> None:
        """Keep the stream's next payloads, numbered on from the last."""
        ...

    async def finish(self, request_id: str, error: TokenwireError | None = None) -> None:
        """Mark the end: done, or `error` when it failed before its first payload."""
        ...

    async def info(self, request_id: str) -> StreamInfo | None:
        """The stream, or None when it is unknown, expired, or its producer is gone."""
        ...

    def read(self, request_id: str, start: int) -> AsyncIterator[tuple[int, Payload]]:
        """Payloads from number `start`: the kept ones, then live ones until the end (raising
        the stream's error to a reader from 0)."""
        ...

    async def remove(self, request_id: str) -> None: ...


@runtime_checkable
class CreatesClaimed(Protocol):
    """A store that marks a stream read, takes its producer's lease and creates it in one
    round trip, with a control that shares its backing service (`shares_control`): what
    `touch`, `claim` and `create` do one after the other, before a stream's first payload."""

    def shares_control(self, control: object) -> bool:
        """Whether `control` keeps its leases and presence where this store keeps streams."""
        ...

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
        """Touch, claim, then create: the lease generation (None: another replica holds
        the lease, and nothing was created) and whether the stream was created (False: the
        id is taken). `meta` gets the generation as its "generation" field.

        Raises:
            StreamStoreError: the store cannot be reached.
        """
        ...


@dataclass(frozen=True, slots=True)
class ResumeConfig:
    """Attributes:
    grace_seconds: how long a dropped stream keeps generating for a reconnect; a finished
        stream stays readable as long.
    max_stream_bytes: payload bytes kept per stream; older ones can no longer be replayed.
    max_total_bytes: payload bytes kept across streams in this process; past it new streams
        are not resumable.
    store: where streams are kept for every replica: a `redis://` or `rediss://` URL
        (needs `tokenwire[redis]`); None keeps them in this process only.
    failover: with a shared `store`, record each stream's tokens so another replica can
        continue it when its owner dies; False saves that write (about 0.04× of the
        store's echo-backend ceiling) where dying replicas' streams may just end.
    """

    grace_seconds: float = 30.0
    max_stream_bytes: int = 1 << 20
    max_total_bytes: int = 64 << 20
    store: str | None = None
    failover: bool = True
