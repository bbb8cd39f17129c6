"""The resume service: runs resumable streams apart from their connection, and serves readers.

With resume on, a stream is produced by a task of its own (in a task group that outlives the
request) that writes each payload to a `StreamStore`; connections only read from the store. A
dropped stream keeps generating for `grace_seconds`, then is cancelled if nobody came back; a
finished one stays readable as long. A stream dropped before its response started is cancelled
at once: nobody has an id to resume it with. One whose response started early (headers and
keep-alives while it queued) counts as started: its client has the id from `x-request-id`.

Background calls (the Responses API's `background`) run the same way, but to their end
whether anyone reads them or not; `cancel` stops one by request id, and its stream then ends
as the dialect ends a cancelled one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

import anyio
from anyio.abc import TaskGroup

from tokenwire.endpoint import Call
from tokenwire.errors import (
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
    TokenwireError,
)
from tokenwire.events import Finish
from tokenwire.interfaces import Payload, RunsDetached
from tokenwire.stream_store import ResumeConfig, StreamRecord, StreamStore

_LAST_EVENT_ID = re.compile(r"(?P<request_id>[A-Za-z0-9._:-]{1,128}):(?P<seq>\d{1,9})")

TaskGroupProvider = Callable[[], "TaskGroup | None"]
"""Returns the task group that resumable streams run in, or None while there is none."""


def parse_last_event_id(value: str) -> tuple[str, int]:
    """`<request id>:<n>` → (request id, n).

    Raises:
        InvalidRequestError: the value is not of that form.
    """
    match = _LAST_EVENT_ID.fullmatch(value.strip())
    if match is None:
        raise InvalidRequestError(
            "Last-Event-ID must be '<request id>:<event number>' as sent in the stream's ids.",
            param="last-event-id",
        )
    return match["request_id"], int(match["seq"])


class ResumeService:
    """Runs resumable streams in the provided task group and reads them back from `store`."""

    def __init__(
        self, task_groups: TaskGroupProvider, store: StreamStore, config: ResumeConfig
    ) -> None:
        self.task_groups = task_groups
        self.store = store
        self.config = config
        # Background calls running in this process, by request id (for their output so far).
        self.live: dict[str, Call] = {}

    def adopt(
        self, call: Call, request_id: str, dialect: str
    ) -> AsyncIterator[tuple[int, Payload]] | None:
        """Run `call` resumably and return a reader from its first payload, or None when the
        stream cannot be resumable (no task group to run it, or the store is full)."""
        task_group = self.task_groups()
        if task_group is None:
            return None
        record = self.store.create(request_id, dialect)
        if record is None:
            return None
        record.start = call.start
        task_group.start_soon(self._produce, record, call)
        return self.read(record, 0)

    def run_detached(self, call: Call) -> AsyncIterator[tuple[int, Payload]]:
        """Run `call` in the background: to its end, read or not; returns a reader from its
        first payload.

        Raises:
            ServiceUnavailableError: there is no task group to run it in, or the stream
                store is full.
            InvalidRequestError: a stream with the call's request id is kept already.
        """
        task_group = self.task_groups()
        if task_group is None:
            raise ServiceUnavailableError("Background responses cannot start now; try again.")
        request_id = call.request.request_id
        record = self.store.create(request_id, call.request.dialect)
        if record is None:
            raise ServiceUnavailableError(
                "The stream store is full; background responses cannot start now."
            )
        record.background = True
        if isinstance(call.exchange, RunsDetached):
            call.exchange.detach()  # kept as queued before its first step
        self.live[request_id] = call
        task_group.start_soon(self._produce, record, call)
        return self.read(record, 0)

    async def cancel(self, request_id: str) -> bool:
        """Stop the background call `request_id` (it leaves the batch at the next step) and
        wait until its stream has ended; False when it is not running in this process."""
        record = self.store.get(request_id)
        if record is None or not record.background or request_id not in self.live:
            return False
        record.cancel_requested = True
        record.producer.cancel()
        while not record.done:
            await record.changed.wait()
        return True

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
                f"There is no resumable stream {request_id[:128]!r} (it ended or expired).",
                param="request_id",
            )
        if start < record.first_seq:
            raise NotFoundError(
                f"Event {start} of stream {request_id!r} is no longer kept; "
                f"the oldest kept is {record.first_seq}.",
                param="last-event-id",
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
            if record.readers == 0 and not record.done and not record.background:
                task_group = self.task_groups()
                started = record.next_seq > 0 or (
                    record.start is not None and record.start.committed
                )
                if not started or task_group is None:
                    # Dropped before its first byte: nobody has an id to resume with.
                    self._cancel(record)
                else:
                    record.detached_at = anyio.current_time()
                    task_group.start_soon(self._expire, record)

    async def _produce(self, record: StreamRecord, call: Call) -> None:
        try:
            with record.producer:
                try:
                    async with aclosing(call.payloads()) as payloads:
                        async for payload in payloads:
                            self.store.append(record, payload)
                except TokenwireError as error:
                    record.error = error
            if record.cancel_requested and record.producer.cancelled_caught:
                # Cancelled by id: the stream still ends as the dialect ends a cancelled one
                # (a Responses stream with its `cancelled` response), so readers see an end.
                for payload in call.exchange.render(Finish("cancelled")):
                    self.store.append(record, payload)
        finally:
            record.done = True
            record.notify()
            self.live.pop(record.request_id, None)
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
