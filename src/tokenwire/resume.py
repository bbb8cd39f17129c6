"""Resumable SSE streams: a client that lost its connection reconnects and misses nothing.

With resume on, an OpenAI or Anthropic SSE stream is produced by a task of its own that
writes each payload to a `StreamStore`; the connection only reads from the store. A client
that drops reconnects — `GET /v1/streams/{request_id}` or the same POST, with
`Last-Event-ID: <request id>:<n>` — and reads exactly the payloads after `n`, then the live
rest. A dropped stream keeps generating for `grace_seconds`, then is cancelled if nobody came
back. A request dropped before its first byte, and every other transport (NDJSON, WebSocket)
and the Gemini dialect (its SSE carries no ids), cancel at once as usual.

Resume works on payloads, not events: replaying rendered payloads is what makes the ids and
bytes a reconnecting client sees identical to those it would have seen.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from tokenwire._host import BackendHost
from tokenwire.endpoint import Call, Endpoint
from tokenwire.errors import InvalidRequestError, NotFoundError, TokenwireError
from tokenwire.interfaces import Payload
from tokenwire.logs import request_id_var
from tokenwire.transports.sse import SSETransport

_LAST_EVENT_ID = re.compile(r"(?P<request_id>[A-Za-z0-9._:-]{1,128}):(?P<seq>\d{1,9})")


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


def parse_last_event_id(value: str) -> tuple[str, int]:
    match = _LAST_EVENT_ID.fullmatch(value.strip())
    if match is None:
        raise InvalidRequestError(
            "Last-Event-ID must be '<request id>:<event number>' as sent in the stream's ids.",
            param="last-event-id",
        )
    return match["request_id"], int(match["seq"])


@dataclass(eq=False, slots=True)
class StreamRecord:
    """One stream's payloads: `first_seq` is the number of `payloads[0]`."""

    request_id: str
    endpoint: Endpoint
    payloads: list[Payload] = field(default_factory=list)
    first_seq: int = 0
    bytes: int = 0
    done: bool = False
    error: TokenwireError | None = None  # a failure before the first payload
    readers: int = 0
    detached_at: float | None = None
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
    """Where resumable streams keep their payloads.

    The in-memory store serves one replica; a shared store (Redis streams: XADD per payload,
    XREAD from an id) implements the same four methods to resume across replicas.
    """

    def create(self, request_id: str, endpoint: Endpoint) -> StreamRecord | None: ...

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

    def create(self, request_id: str, endpoint: Endpoint) -> StreamRecord | None:
        if request_id in self.records:
            raise InvalidRequestError(
                "This x-request-id belongs to a resumable stream already; resume it with "
                "Last-Event-ID or use a new id.",
                param="x-request-id",
            )
        if self.bytes >= self.max_total_bytes:
            return None  # full: the stream runs, but not resumably
        record = StreamRecord(request_id, endpoint)
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


class ResumeService:
    """Runs resumable streams in the host's task group and serves reconnects."""

    def __init__(
        self, host: BackendHost, config: ResumeConfig, store: MemoryStreamStore | None = None
    ) -> None:
        self.host = host
        self.config = config
        self.store = store or MemoryStreamStore(config.max_stream_bytes, config.max_total_bytes)

    def adopt(
        self, call: Call, request_id: str, endpoint: Endpoint
    ) -> AsyncIterator[tuple[int, Payload]] | None:
        """Run `call` resumably and return a reader from its first payload, or None when the
        stream cannot be resumable (no task group to run it, or the store is full)."""
        task_group = self.host.task_group
        if task_group is None:
            return None
        record = self.store.create(request_id, endpoint)
        if record is None:
            return None
        task_group.start_soon(self._produce, record, call)
        return self.read(record, 0)

    def resume(self, last_event_id: str) -> tuple[StreamRecord, AsyncIterator[tuple[int, Payload]]]:
        """A reader for the payloads after `last_event_id` (`<request id>:<n>`).

        Raises:
            InvalidRequestError: the id is malformed.
            NotFoundError: no such stream, or its payloads after that id are gone.
        """
        request_id, seq = parse_last_event_id(last_event_id)
        return self.open(request_id, seq + 1)

    def open(
        self, request_id: str, start: int
    ) -> tuple[StreamRecord, AsyncIterator[tuple[int, Payload]]]:
        """A reader for stream `request_id` from payload number `start`.

        Raises:
            NotFoundError: no such stream, or payload `start` is no longer kept.
        """
        record = self.store.get(request_id)
        if record is None:
            raise NotFoundError(
                f"There is no resumable stream {request_id[:128]!r} (it ended or expired)."
            )
        if start < record.first_seq:
            raise NotFoundError(
                f"Event {start} of stream {request_id!r} is no longer kept; "
                f"the oldest kept is {record.first_seq}."
            )
        return record, self.read(record, start)

    async def read(self, record: StreamRecord, start: int) -> AsyncIterator[tuple[int, Payload]]:
        """Payloads from number `start` on: the kept ones, then live ones until the end."""
        record.readers += 1
        record.detached_at = None
        seq = start
        try:
            while True:
                while seq < record.next_seq:
                    yield seq, record.payloads[seq - record.first_seq]
                    seq += 1
                if record.done:
                    if record.error is not None and seq == 0:
                        raise record.error
                    return
                await record.changed.wait()
        finally:
            record.readers -= 1
            if record.readers == 0 and not record.done:
                if record.next_seq == 0:
                    # Dropped before its first byte: nobody has an id to resume with.
                    self._cancel(record)
                else:
                    record.detached_at = anyio.current_time()
                    if self.host.task_group is not None:
                        self.host.task_group.start_soon(self._expire, record)

    async def _produce(self, record: StreamRecord, call: Call) -> None:
        with record.producer:
            try:
                async for payload in call.payloads():
                    self.store.append(record, payload)
            except TokenwireError as error:
                record.error = error
            finally:
                record.done = True
                record.notify()
        # A finished stream stays readable for the grace period, for late reconnects.
        await anyio.sleep(self.config.grace_seconds)
        self.store.remove(record)

    async def _expire(self, record: StreamRecord) -> None:
        detached_at = record.detached_at
        await anyio.sleep(self.config.grace_seconds)
        if record.readers == 0 and not record.done and record.detached_at == detached_at:
            self._cancel(record)

    def _cancel(self, record: StreamRecord) -> None:
        record.producer.cancel()
        self.store.remove(record)


class StreamResumeRoute:
    """`GET /v1/streams/{request_id}`: continue a resumable stream after `Last-Event-ID`."""

    def __init__(self, service: ResumeService) -> None:
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = scope["path_params"]["request_id"]
        scope.setdefault("state", {})["request_id"] = request_id
        request_id_var.set(request_id)
        header = Headers(scope=scope).get("last-event-id")
        try:
            start = 0
            if header is not None:
                stream_id, seq = parse_last_event_id(header)
                if stream_id != request_id:
                    raise InvalidRequestError(
                        "Last-Event-ID names another stream than the path.",
                        param="last-event-id",
                    )
                start = seq + 1
            record, payloads = self.service.open(request_id, start)
        except TokenwireError as error:
            body = {"error": {"message": error.message, "type": error.kind}}
            await JSONResponse(body, status_code=error.status_code)(scope, receive, send)
            return

        await SSETransport().stream(payloads, scope, receive, send, record.endpoint)
