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

A shared store that fails never fails a stream: the stream goes on unresumable elsewhere,
with a warning and `tokenwire_stream_store_errors_total`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field

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
from tokenwire.interfaces import Payload, RunsDetached, SettlesWrites
from tokenwire.memory_store import MemoryStreamStore
from tokenwire.pipeline import closing
from tokenwire.stream_control import CancelLocal, LocalStreamControl, StreamControl
from tokenwire.stream_start import StreamStart
from tokenwire.stream_store import ResumeConfig, StreamInfo, StreamStore, StreamStoreError
from tokenwire.transports._failover import Failover, Recorder, adopt_or_wait
from tokenwire.transports._store_errors import StoreErrors

logger = logging.getLogger("tokenwire.resume")

_LAST_EVENT_ID = re.compile(r"(?P<request_id>[A-Za-z0-9._:-]{1,128}):(?P<seq>\d{1,9})")

FLUSH_LINGER_SECONDS = 0.005
"""How long the shared-store writer gathers payloads before one write (a reader elsewhere lags
by at most this plus a round trip)."""

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


@dataclass(eq=False, slots=True)
class _Produced:
    """A stream this process produces (process-local state, never stored)."""

    # The call's start: once committed, its client has the stream's id (from the headers)
    # before any payload exists.
    start: StreamStart | None = None
    # A background stream runs to its end whoever reads it; only a cancel by id stops it.
    background: bool = False
    # Made up front so a stream dropped before its producer starts is cancelled all the same.
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    sent: bool = False  # a payload went out
    pending: list[Payload] = field(default_factory=list)  # for the shared store
    wake: anyio.Event = field(default_factory=anyio.Event)
    shared: bool = False  # written to the shared store too (until that fails)
    done: bool = False
    cancelled: bool = False  # by id, from another replica (acted on once)
    stopped: bool = False  # a background call cancelled by id: it ends as a cancelled one
    ended: anyio.Event = field(default_factory=anyio.Event)  # its last payload is kept
    # Failover: numbers payloads and notes their tokens (None: not recorded); the lease
    # generation of a stream adopted from a replica that died (0: claimed here at start).
    recorder: Recorder | None = None
    adopted: int = 0

    @property
    def started(self) -> bool:
        """A client holds the stream's id: a payload went out, or the response began early."""
        return self.sent or (self.start is not None and self.start.committed)


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
        self._produced: dict[str, _Produced] = {}
        # Background calls running in this process, by request id (for their output so far).
        self.live: dict[str, Call] = {}
        self._readers: dict[str, int] = {}
        self._heartbeat = False
        self._serving_cancels = False

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
        self._start(task_group, request_id, dialect, call, _Produced(start=call.start))
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
        produced = _Produced(start=call.start, background=True)
        self._start(task_group, request_id, dialect, call, produced)
        return self.read(request_id, 0)

    async def cancel_detached(self, request_id: str) -> bool:
        """Stop the background call `request_id` (it leaves the batch at the next step) and
        wait until its stream has ended; False when it is not running in this process."""
        produced = self._produced.get(request_id)
        if produced is None or not produced.background or request_id not in self.live:
            return False
        produced.stopped = True
        produced.scope.cancel()
        await produced.ended.wait()
        return True

    def start_of(self, request_id: str) -> StreamStart | None:
        """The start of stream `request_id` when it runs here (a reader of a stream whose
        response began early begins early too); None for one produced elsewhere."""
        produced = self._produced.get(request_id)
        return None if produced is None else produced.start

    def _start(
        self,
        task_group: TaskGroup,
        request_id: str,
        dialect: str,
        call: Call,
        produced: _Produced,
    ) -> None:
        self._produced[request_id] = produced
        task_group.start_soon(self._produce, request_id, dialect, call, produced)
        if self.shared and not self._serving_cancels:
            self._serving_cancels = True
            task_group.start_soon(self._serve_cancels)

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
                self._failed("read", exc)
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
            self._failed("read", exc)
            return False
        adoption = await adopt_or_wait(failover, request_id, self._lease_seconds)
        if adoption is None:
            try:
                return not await failover.orphaned(request_id)  # another replica won
            except StreamStoreError:
                return False
        produced = _Produced(
            start=adoption.call.start,
            sent=True,
            recorder=adoption.recorder,
            adopted=adoption.generation,
        )
        self._start(task_group, request_id, adoption.dialect, adoption.call, produced)
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
            self._failed("cancel", exc)
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
        produced = self._produced.get(request_id)
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
            self._failed("presence", exc)

    async def _beat(self) -> None:
        """Keep every stream read here present for the replicas that produce them."""
        try:
            while self._readers:
                for request_id in list(self._readers):
                    await self._touch(request_id)
                await anyio.sleep(self.interval)
        finally:
            self._heartbeat = False

    async def _produce(
        self, request_id: str, dialect: str, call: Call, produced: _Produced
    ) -> None:
        generation = await self._share(request_id, dialect, call, produced)
        error: TokenwireError | None = None
        try:
            with produced.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch, request_id, produced, generation)
                    # The writer ends on its own once it flushed the last payload.
                    async with anyio.create_task_group() as writer:
                        if produced.shared:
                            writer.start_soon(self._flush, request_id, produced)
                        try:
                            events = None
                            if produced.recorder is not None:
                                events = produced.recorder.tap(call.generate(call.request))
                            async with closing(call.payloads(events)) as payloads:
                                async for payload in payloads:
                                    self._keep(request_id, produced, payload)
                        except TokenwireError as exc:
                            error = exc
                        self.local.end(request_id, error)
                        produced.done = True
                        produced.wake.set()
                    tg.cancel_scope.cancel()
            if produced.stopped and produced.scope.cancelled_caught:
                # Cancelled by id: the stream still ends as the dialect ends a cancelled one
                # (a Responses stream with its `cancelled` response), so readers see an end.
                rendered = call.exchange.render(Finish("cancelled"))
                if isinstance(call.exchange, SettlesWrites):
                    await call.exchange.settle()  # stored as cancelled before it says so
                for payload in rendered:
                    self._keep(request_id, produced, payload)
        finally:
            self.local.end(request_id, error)
            self.live.pop(request_id, None)
            produced.ended.set()
            with anyio.CancelScope(shield=True):
                await self._unshare(request_id, produced, generation, error)
        if produced.stopped or not produced.scope.cancel_called:
            # A finished stream stays readable for the grace period, for late reconnects.
            await anyio.sleep(self.config.grace_seconds)
        self._produced.pop(request_id, None)
        self.local.discard(request_id)

    def _keep(self, request_id: str, produced: _Produced, payload: Payload) -> None:
        if produced.recorder is not None and not produced.recorder.keep(payload):
            return  # replayed by a continuation: the replica that died stored it
        produced.sent = True
        self.local.put(request_id, payload)
        if produced.shared:
            produced.pending.append(payload)
            produced.wake.set()

    async def _share(self, request_id: str, dialect: str, call: Call, produced: _Produced) -> int:
        """Make the stream known to other replicas; its lease generation (0: not shared)."""
        try:
            await self.control.touch(request_id, self.config.grace_seconds)
            if not self.shared:
                return 1
            if produced.adopted:
                produced.shared = True  # the store has it; the lease was taken to adopt it
                return produced.adopted
            generation = await self.control.claim(request_id, self._lease_seconds)
            if generation is None:
                logger.warning("stream %s is produced elsewhere; not shared", request_id)
                return 0
            meta = {
                "owner": self.control.replica,
                "generation": str(generation),
                "request": describe_request(call),
            }
            if self.failover is not None and self.failover.enabled and not produced.background:
                fields = self.failover.describe(call)
                meta.update(fields)
                produced.recorder = Recorder() if fields else None
            if not await self.store.create(request_id, dialect, meta):
                logger.warning("stream %s exists in the store already; not shared", request_id)
                return 0
        except StreamStoreError as exc:
            self._failed("create", exc)
            return 0
        produced.shared = True
        return generation

    async def _unshare(
        self, request_id: str, produced: _Produced, generation: int, error: TokenwireError | None
    ) -> None:
        if not produced.shared:
            return
        with anyio.move_on_after(5):
            try:
                if produced.pending:
                    self._record(request_id, produced)
                    await self.store.append(request_id, produced.pending)
                    produced.pending = []
                if produced.scope.cancel_called and not produced.stopped:
                    # Expired or dropped: nobody may resume it.
                    await self.store.remove(request_id)
                else:
                    await self.store.finish(request_id, error)
                await self.control.release(request_id, generation)
                if produced.recorder is not None and self.failover is not None:
                    await self.failover.forget(request_id)
            except StreamStoreError as exc:
                self._failed("append", exc)

    async def _flush(self, request_id: str, produced: _Produced) -> None:
        """Write what accumulated since the last flush in one round trip (a pipeline)."""
        while produced.shared:
            await produced.wake.wait()
            if not produced.done:
                # Let a few decode steps accumulate: a round trip per payload costs the
                # producer's CPU (half the echo throughput); readers here never wait for it.
                await anyio.sleep(FLUSH_LINGER_SECONDS)
            produced.wake = anyio.Event()
            batch, produced.pending = produced.pending, []
            if batch and produced.shared:
                try:
                    self._record(request_id, produced)
                    await self.store.append(request_id, batch)
                except StreamStoreError as exc:
                    produced.shared = False
                    self._failed("append", exc)
            if produced.done and not produced.pending:
                return

    def _record(self, request_id: str, produced: _Produced) -> None:
        """Keep the tokens of the payloads about to be written (for failover), before them."""
        if produced.recorder is not None and self.failover is not None:
            self.failover.record(request_id, produced.recorder)

    async def _watch(self, request_id: str, produced: _Produced, generation: int) -> None:
        """Renew the lease, honour cancels, and cancel once no reader anywhere wants it."""
        while True:
            await anyio.sleep(self.interval)
            try:
                if produced.shared:
                    if not await self.control.renew(request_id, generation, self._lease_seconds):
                        logger.warning("lost the lease of stream %s; stopping it", request_id)
                        # Another replica produces it now (it adopted it): leave the store
                        # to that one, neither writing, removing nor ending the stream there.
                        produced.shared = False
                        produced.scope.cancel()
                        return
                    if not produced.cancelled and await self.control.cancel_requested(request_id):
                        self._cancel_here(request_id)
                if (
                    not produced.background
                    and request_id not in self._readers
                    and not await self.control.present(request_id)
                ):
                    produced.scope.cancel()
                    return
            except StreamStoreError as exc:
                # Without the store nobody elsewhere can read it: only readers here count.
                self._failed("control", exc)
                produced.shared = False
                produced.wake.set()
                if not produced.background and request_id not in self._readers:
                    produced.scope.cancel()
                    return

    @property
    def _lease_seconds(self) -> float:
        return max(2.0, self.interval * 4)

    def _cancel_here(self, request_id: str) -> int:
        produced = self._produced.get(request_id)
        if produced is not None:
            if produced.cancelled:
                return 1  # the message and the key both arrived: one cancel
            produced.cancelled = True
        cancelled = sum(handler(request_id) for handler in self.cancel_handlers)
        if not cancelled and produced is not None and not produced.done:
            produced.stopped = produced.background  # it ends as a cancelled response
            produced.scope.cancel()
            cancelled = 1
        return cancelled

    async def _serve_cancels(self) -> None:
        await self.control.serve_cancels(self._cancel_here)

    def _failed(self, operation: str, exc: StreamStoreError) -> None:
        self.errors.count(operation)
        logger.warning(
            "stream store: %s failed; streams go on, unresumable elsewhere (%s)", operation, exc
        )


def build_resume_service(task_groups: TaskGroupProvider, config: ResumeConfig) -> ResumeService:
    """The service `config` asks for: streams in this process, or shared through Redis (the
    client is imported only then)."""
    if config.store is None:
        return ResumeService(task_groups, None, config)
    from tokenwire.redis_control import RedisStreamControl
    from tokenwire.redis_store import RedisStreamStore, connect

    client = connect(config.store)
    ttl_seconds = config.grace_seconds + 60.0
    store = RedisStreamStore(
        client,
        max_stream_bytes=config.max_stream_bytes,
        ttl_seconds=ttl_seconds,
        done_seconds=config.grace_seconds,
    )
    control = RedisStreamControl(client)
    failover = Failover(client, store, control, ttl_seconds)
    return ResumeService(task_groups, store, config, control=control, failover=failover)


def describe_request(call: Call) -> str:
    """The parsed request as JSON, as far as it is JSON-able (for a replica that takes over)."""
    try:
        fields = asdict(call.request)
    except TypeError:
        return "{}"
    return json.dumps(fields, default=lambda value: None)[:65536]
