"""`MemoryStreamStore`: resumable streams kept in this process (one replica)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

import anyio

from tokenwire.errors import InvalidRequestError, TokenwireError
from tokenwire.interfaces import Payload
from tokenwire.stores.stream_store import StreamInfo


@dataclass(eq=False, slots=True)
class _Kept:
    """One stream's payloads: `first_seq` is the number of `payloads[0]`."""

    dialect: str
    payloads: list[Payload] = field(default_factory=list)
    first_seq: int = 0
    bytes: int = 0
    done: bool = False
    error: TokenwireError | None = None  # a failure before the first payload
    changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.payloads)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


class MemoryStreamStore:
    """Streams in this process, bounded per stream and in total (oldest payloads drop first).

    Besides the async `StreamStore` methods it has synchronous ones (`add`, `put`, `end`):
    the resume service writes the streams it produces through them without awaiting.
    """

    def __init__(self, max_stream_bytes: int, max_total_bytes: int) -> None:
        self.max_stream_bytes = max_stream_bytes
        self.max_total_bytes = max_total_bytes
        self.streams: dict[str, _Kept] = {}
        self.bytes = 0

    def add(self, request_id: str, dialect: str) -> bool:
        """Start keeping a stream; False when the store is full.

        Raises:
            InvalidRequestError: a stream with this id is kept already.
        """
        if request_id in self.streams:
            raise InvalidRequestError(
                "This x-request-id belongs to a resumable stream already; resume it with "
                "Last-Event-ID or use a new id.",
                param="x-request-id",
            )
        if self.bytes >= self.max_total_bytes:
            return False
        self.streams[request_id] = _Kept(dialect)
        return True

    def put(self, request_id: str, payload: Payload) -> None:
        kept = self.streams.get(request_id)
        if kept is None:
            return
        size = len(payload.data)
        kept.payloads.append(payload)
        kept.bytes += size
        self.bytes += size
        while kept.bytes > self.max_stream_bytes and len(kept.payloads) > 1:
            dropped = kept.payloads.pop(0)
            kept.first_seq += 1
            kept.bytes -= len(dropped.data)
            self.bytes -= len(dropped.data)
        kept.notify()

    def end(self, request_id: str, error: TokenwireError | None = None) -> None:
        kept = self.streams.get(request_id)
        if kept is not None and not kept.done:
            kept.done = True
            kept.error = error
            kept.notify()

    def has(self, request_id: str) -> bool:
        return request_id in self.streams

    async def create(
        self, request_id: str, dialect: str, meta: Mapping[str, str] | None = None
    ) -> bool:
        if request_id in self.streams:
            return False
        return self.add(request_id, dialect)

    async def append(self, request_id: str, payloads: Sequence[Payload]) -> None:
        for payload in payloads:
            self.put(request_id, payload)

    async def finish(self, request_id: str, error: TokenwireError | None = None) -> None:
        self.end(request_id, error)

    async def info(self, request_id: str) -> StreamInfo | None:
        kept = self.streams.get(request_id)
        if kept is None:
            return None
        return StreamInfo(request_id, kept.dialect, kept.first_seq, kept.done)

    async def read(self, request_id: str, start: int) -> AsyncIterator[tuple[int, Payload]]:
        kept = self.streams.get(request_id)
        seq = start
        while kept is not None:
            seq = max(seq, kept.first_seq)  # a reader slower than the bound loses the oldest
            while seq < kept.next_seq:
                yield seq, kept.payloads[seq - kept.first_seq]
                seq += 1
            if kept.done:
                if kept.error is not None and seq == 0:
                    raise kept.error
                return
            await kept.changed.wait()

    async def remove(self, request_id: str) -> None:
        self.discard(request_id)

    def discard(self, request_id: str) -> None:
        kept = self.streams.pop(request_id, None)
        if kept is not None:
            self.bytes -= kept.bytes
            kept.done = True
            kept.notify()
