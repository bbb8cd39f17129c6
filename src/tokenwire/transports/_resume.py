"""The resume service: runs resumable streams apart from their connection, and serves readers.

With resume on, a stream is produced by a task of its own (in a task group that outlives the
request) that writes each payload to this process's memory store, and — with a shared store
— to it as well, batched per flush. Readers here read the memory copy; readers on other
replicas read the shared one. A stream whose readers all left (on every replica) keeps
generating for `grace_seconds`, then is cancelled; a finished one stays readable as long. A
stream dropped before its response started is cancelled at once: nobody has an id to resume
it with. One whose response started early (headers and keep-alives while it queued) counts as
started: its client has the id from `x-request-id`.

Background calls (the Responses API's `background`) run the same way, shared store included,
but to their end whether anyone reads them or not; `cancel_detached` stops one by request id,
and its stream then ends as the dialect ends a cancelled one.

The producing side is `_producer.StreamProducer`; this module starts streams and reads them
back, here or from the shared store, taking over a stream whose owner died.

A shared store that fails never fails a stream: the stream goes on unresumable elsewhere,
with a warning and `tokenwire_stream_store_errors_total`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import anyio
from anyio.abc import TaskGroup

from tokenwire.endpoint import Call
from tokenwire.errors import (
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
)
from tokenwire.interfaces import Payload, RunsDetached
from tokenwire.pipeline import closing
from tokenwire.stores.memory_store import MemoryStreamStore
from tokenwire.stores.stream_control import CancelLocal, LocalStreamControl, StreamControl
from tokenwire.stores.stream_store import ResumeConfig, StreamInfo, StreamStore, StreamStoreError
from tokenwire.stream_start import StreamStart
from tokenwire.transports._failover import Failover, adopt_or_wait
from tokenwire.transports._producer import (
    FLUSH_LINGER_SECONDS,
    Produced,
    StreamProducer,
    describe_request,
)
from tokenwire.transports._store_errors import StoreErrors

# Re-exported: they were defined here before `_producer` held them.
__all__ = [
    "FLUSH_LINGER_SECONDS",
    "ResumeService",
    "TaskGroupProvider",
    "build_resume_service",
    "describe_request",
    "parse_last_event_id",
]

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
    """Runs resumable streams in the provided task group and reads them back.

    `store` is where other replicas find the streams (None, or this process's memory store:
    only here); `control` shares leases, reader presence and cancels with them.
    """

    def __init__(
        self,
        task_groups: TaskGroupProvider,
        store: StreamStore | None,
        config: ResumeConfig,
        *,
        control: StreamControl | None = None,
        failover: Failover | None = None,
    ) -> None:
        self.task_groups = task_groups
        self.config = config
        self.local = (
            store
            if isinstance(store, MemoryStreamStore)
            else MemoryStreamStore(config.max_stream_bytes, config.max_total_bytes)
        )
        self.store: StreamStore = store if store is not None else self.local
        self.control: StreamControl = control or LocalStreamControl()
        self.errors = StoreErrors()
        # Continues streams whose owner died (a shared store only; see `_failover`).
        self.failover = failover
        # Who cancels a request by id here (the cancellation middleware registers itself).
        self.cancel_handlers: list[CancelLocal] = []
        self.interval = max(0.01, min(config.grace_seconds / 4, 1.0))
        # Background calls running in this process, by request id (for their output so far).
        self.live: dict[str, Call] = {}
        self._readers: dict[str, int] = {}
        self._heartbeat = False
        self.producer = StreamProducer(
            config,
            self.local,
            self.store,
            self.control,
            failover,
            self.errors,
            live=self.live,
            readers=self._readers,
            cancel_handlers=self.cancel_handlers,
            interval=self.interval,
        )

    @property
    def shared(self) -> bool:
        return self.store is not self.local

    def adopt(
        self, call: Call, request_id: str, dialect: str
    ) -> AsyncIterator[tuple[int, Payload]] | None:
        """Run `call` resumably and return a reader from its first payload, or None when the
        stream cannot be resumable (no task group to run it, or the store is full)."""
        task_group = self.task_groups()
        if task_group is None or not self.local.add(request_id, dialect):
            return None
        self.producer.start(task_group, request_id, dialect, call, Produced(start=call.start))
        return self.read(request_id, 0)

    def run_detached(self, call: Call) -> AsyncIterator[tuple[int, Payload]]:
        """Run `call` in the background: to its end, read or not; returns a reader from its
        first payload.

        Raises:
            ServiceUnavailableError: there is no task group to run it in, or this process
                keeps as many stream bytes as it may.
            InvalidRequestError: a stream with the call's request id is kept already.
        """
        task_group = self.task_groups()
        if task_group is None:
            raise ServiceUnavailableError("Background responses cannot start now; try again.")
        request_id, dialect = call.request.request_id, call.request.dialect
        if not self.local.add(request_id, dialect):
            raise ServiceUnavailableError(
                "The stream store is full; background responses cannot start now."
            )
        if isinstance(call.exchange, RunsDetached):
            call.exchange.detach()  # kept as queued before its first step
        self.live[request_id] = call
        produced = Produced(start=call.start, background=True)
        self.producer.start(task_group, request_id, dialect, call, produced)
        return self.read(request_id, 0)

    async def cancel_detached(self, request_id: str) -> bool:
        """Stop the background call `request_id` (it leaves the batch at the next step) and
        wait until its stream has ended; False when it is not running in this process."""
        produced = self.producer.streams.get(request_id)
        if produced is None or not produced.background or request_id not in self.live:
            return False
        produced.stopped = True
        produced.scope.cancel()
        await produced.ended.wait()
        return True

    def start_of(self, request_id: str) -> StreamStart | None:
        """The start of stream `request_id` when it runs here (a reader of a stream whose
        response began early begins early too); None for one produced elsewhere."""
        produced = self.producer.streams.get(request_id)
        return None if produced is None else produced.start

    async def open(
        self, request_id: str, start: int
    ) -> tuple[StreamInfo, AsyncIterator[tuple[int, Payload]]]:
        """A reader for stream `request_id` from payload number `start`, wherever it runs.

        Raises:
            NotFoundError: no such stream, or payload `start` is no longer kept.
        """
        info = await self.local.info(request_id)
        if info is None and self.shared:
            try:
                info = await self.store.info(request_id)
                if info is None and await self._take_over(request_id):
                    info = await self.store.info(request_id)
            except StreamStoreError as exc:
                self.errors.failed("read", exc)
        if info is None:
            raise NotFoundError(
                f"There is no resumable stream {request_id[:128]!r} (it ended or expired).",
                param="request_id",
            )
        if start < info.first_seq:
            raise NotFoundError(
                f"Event {start} of stream {request_id!r} is no longer kept; "
                f"the oldest kept is {info.first_seq}.",
                param="last-event-id",
            )
        return info, self.read(request_id, start)

    async def read(self, request_id: str, start: int) -> AsyncIterator[tuple[int, Payload]]:
        """Payloads from number `start` on: the kept ones, then live ones until the end."""
        source = self.local if self.local.has(request_id) else self.store
        self._attach(request_id)
        try:
            produced = self.producer.streams.get(request_id)
            if produced is not None and not produced.ready.is_set():
                # Its shared setup is under way: a client that has a payload can resume
                # it on any replica, so none goes out before the stream is known there.
                await produced.ready.wait()
            while True:
                async with closing(source.read(request_id, start)) as payloads:
                    async for item in payloads:
                        start = item[0] + 1
                        yield item
                # A shared read also ends when the owner died: the stream goes on if this
                # replica (or another) takes it over.
                if source is self.local or not await self._take_over(request_id):
                    return
        finally:
            self._detach(request_id)

    async def _take_over(self, request_id: str) -> bool:
        """After a shared read ended: whether the stream has a producer again (adopted here,
        or by another replica), so reading goes on. Only a replica with a reader adopts: a
        stream nobody reads simply expires."""
        failover = self.failover
        task_group = self.task_groups()
        if failover is None or not failover.enabled or task_group is None:
            return False
        try:
            if not await failover.orphaned(request_id):
                info = await self.store.info(request_id)  # ended, or produced again
                return info is not None and not info.done
            if not await self.control.present(request_id):
                return False  # no reader for the grace period: it would have been cancelled
        except StreamStoreError as exc:
            self.errors.failed("read", exc)
            return False
        adoption = await adopt_or_wait(failover, request_id, self.producer.lease_seconds)
        if adoption is None:
            try:
                return not await failover.orphaned(request_id)  # another replica won
            except StreamStoreError:
                return False
        produced = Produced(
            start=adoption.call.start,
            sent=True,
            recorder=adoption.recorder,
            adopted=adoption.generation,
        )
        self.producer.start(task_group, request_id, adoption.dialect, adoption.call, produced)
        return True

    async def cancel(self, request_id: str) -> bool:
        """Cancel a stream that another replica produces; False when none does (what runs
        here is cancelled by the cancellation middleware, or by `cancel_detached`).

        Raises:
            ServiceUnavailableError: the shared store is unreachable, so whether another
                replica runs it cannot be known (a 404 would claim it does not).
        """
        if not self.shared:
            return False
        try:
            return await self.control.cancel(request_id)
        except StreamStoreError as exc:
            self.errors.failed("cancel", exc)
            raise ServiceUnavailableError(
                f"Request {request_id[:128]!r} does not run on this replica, and the stream "
                "store that knows the others' is unreachable; try again."
            ) from exc

    def register_metrics(self, registry: object) -> None:
        """Export the store's error counter to a Prometheus registry."""
        self.errors.register(registry)

    def _attach(self, request_id: str) -> None:
        self._readers[request_id] = self._readers.get(request_id, 0) + 1
        task_group = self.task_groups()
        if not self._heartbeat and task_group is not None:
            self._heartbeat = True
            task_group.start_soon(self._beat)

    def _detach(self, request_id: str) -> None:
        left = self._readers[request_id] - 1
        if left:
            self._readers[request_id] = left
            return
        del self._readers[request_id]
        produced = self.producer.streams.get(request_id)
        task_group = self.task_groups()
        if produced is not None and produced.background:
            return  # runs to its end whoever reads it
        if produced is not None and (not produced.started or task_group is None):
            produced.scope.cancel()  # dropped before its response began: nobody can resume it
        elif task_group is not None:
            # The grace period starts now, for the producer wherever it runs.
            task_group.start_soon(self._touch, request_id)

    async def _touch(self, request_id: str) -> None:
        try:
            await self.control.touch(request_id, self.config.grace_seconds)
        except StreamStoreError as exc:
            self.errors.failed("presence", exc)

    async def _beat(self) -> None:
        """Keep every stream read here present for the replicas that produce them."""
        try:
            while self._readers:
                for request_id in list(self._readers):
                    await self._touch(request_id)
                await anyio.sleep(self.interval)
        finally:
            self._heartbeat = False


def build_resume_service(task_groups: TaskGroupProvider, config: ResumeConfig) -> ResumeService:
    """The service `config` asks for: streams in this process, or shared through Redis (the
    client is imported only then)."""
    if config.store is None:
        return ResumeService(task_groups, None, config)
    from tokenwire.stores.redis_connection import connect
    from tokenwire.stores.redis_control import RedisStreamControl
    from tokenwire.stores.redis_store import RedisStreamStore

    client = connect(config.store)
    ttl_seconds = config.grace_seconds + 60.0
    store = RedisStreamStore(
        client,
        max_stream_bytes=config.max_stream_bytes,
        ttl_seconds=ttl_seconds,
        done_seconds=config.grace_seconds,
    )
    control = RedisStreamControl(client)
    failover = Failover(client, store, control, ttl_seconds) if config.failover else None
    return ResumeService(task_groups, store, config, control=control, failover=failover)
