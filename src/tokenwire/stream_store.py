"""Where resumable streams keep their payloads: the `StreamStore` Protocol and its in-memory form.

A stream is kept as rendered payloads, not events: replaying payloads is what makes the ids
and bytes a reconnecting client sees identical to those it would have seen. The in-memory
store serves one replica; a shared store (Redis streams: XADD per payload, XREAD from an id)
implements the same Protocol to resume across replicas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import anyio

from tokenwire.errors import InvalidRequestError, TokenwireError
from tokenwire.interfaces import Payload
from tokenwire.stream_start import StreamStart


@dataclass(eq=False, slots=True)
class StreamRecord:
    """One stream's payloads: `first_seq` is the number of `payloads[0]`; `dialect` names the
    dialect that rendered them (a reconnect is framed for it)."""

    request_id: str
    dialect: str
    payloads: list[Payload] = field(default_factory=list)
    first_seq: int = 0
    bytes: int = 0
    done: bool = False
    error: TokenwireError | None = None  # a failure before the first payload
    # The call's start: once committed, a reader's client has the stream's id (its headers)
    # before any payload exists.
    start: StreamStart | None = None
    readers: int = 0
    detached_at: float | None = None
    # A background stream runs to its end whoever reads it; only a cancel by id stops it.
    background: bool = False
    cancel_requested: bool = False
    # Made up front so a stream dropped before its producer starts is cancelled all the same.
    producer: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.payloads)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


class StreamStore(Protocol):
    """Where resumable streams keep their payloads."""

    def create(self, request_id: str, dialect: str) -> StreamRecord | None:
        """A new record, or None when the store is full (the stream then runs unresumable).

        Raises:
            InvalidRequestError: a stream with this id is kept already.
        """
        ...

    def get(self, request_id: str) -> StreamRecord | None: ...

    def append(self, record: StreamRecord, payload: Payload) -> None: ...

    def remove(self, record: StreamRecord) -> None: ...


class MemoryStreamStore:
    """Streams in this process, bounded per stream and in total (oldest payloads drop first)."""

    def __init__(self, max_stream_bytes: int, max_total_bytes: int) -> None:
        self.max_stream_bytes = max_stream_bytes
        self.max_total_bytes = max_total_bytes
        self.records: dict[str, StreamRecord] = {}
        self.bytes = 0

    def create(self, request_id: str, dialect: str) -> StreamRecord | None:
        if request_id in self.records:
            raise InvalidRequestError(
                "This x-request-id belongs to a resumable stream already; resume it with "
                "Last-Event-ID or use a new id.",
                param="x-request-id",
            )
        if self.bytes >= self.max_total_bytes:
            return None
        record = StreamRecord(request_id, dialect)
        self.records[request_id] = record
        return record

    def get(self, request_id: str) -> StreamRecord | None:
        return self.records.get(request_id)

    def append(self, record: StreamRecord, payload: Payload) -> None:
        size = len(payload.data)
        record.payloads.append(payload)
        record.bytes += size
        self.bytes += size
        while record.bytes > self.max_stream_bytes and len(record.payloads) > 1:
            dropped = record.payloads.pop(0)
            record.first_seq += 1
            record.bytes -= len(dropped.data)
            self.bytes -= len(dropped.data)
        record.notify()

    def remove(self, record: StreamRecord) -> None:
        if self.records.get(record.request_id) is record:
            del self.records[record.request_id]
            self.bytes -= record.bytes


@dataclass(frozen=True, slots=True)
class ResumeConfig:
    """Attributes:
    grace_seconds: how long a dropped stream keeps generating for a reconnect; a finished
        stream stays readable as long.
    max_stream_bytes: payload bytes kept per stream; older ones can no longer be replayed.
    max_total_bytes: payload bytes kept across streams; past it new streams are not resumable.
    """

    grace_seconds: float = 30.0
    max_stream_bytes: int = 1 << 20
    max_total_bytes: int = 64 << 20

    def memory_store(self) -> MemoryStreamStore:
        """An in-memory store bounded as configured."""
        return MemoryStreamStore(self.max_stream_bytes, self.max_total_bytes)
