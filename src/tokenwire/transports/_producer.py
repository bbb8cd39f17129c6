"""The producing side of resumable streams: each runs in a task of its own, kept here and
(with a shared store) written there in batches, under a lease it renews, until it ends, is
cancelled by id, or no reader anywhere wants it. `ResumeService` starts them and reads them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import anyio
from anyio.abc import TaskGroup

from tokenwire.endpoint import Call
from tokenwire.errors import TokenwireError
from tokenwire.events import Finish
from tokenwire.interfaces import Payload, SettlesWrites
from tokenwire.pipeline import closing
from tokenwire.stores.memory_store import MemoryStreamStore
from tokenwire.stores.stream_control import CancelLocal, StreamControl
from tokenwire.stores.stream_store import (
    CreatesClaimed,
    ResumeConfig,
    StreamStore,
    StreamStoreError,
)
from tokenwire.stream_start import StreamStart
from tokenwire.transports._failover import Failover, Recorder
from tokenwire.transports._store_errors import StoreErrors

logger = logging.getLogger("tokenwire.resume")

FLUSH_LINGER_SECONDS = 0.005
"""How long the shared-store writer gathers payloads before one write (a reader elsewhere lags
by at most this plus a round trip)."""


@dataclass(eq=False, slots=True)
class Produced:
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
    # Its setup in the shared store is under way: payloads wait in `pending` for it.
    sharing: bool = False
    generation: int = 0  # of its lease (0: not shared)
    # Set once the stream is shared or will not be: readers here wait for it before their
    # first payload, so a client that has a payload can resume it on any replica.
    ready: anyio.Event = field(default_factory=anyio.Event)
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


class StreamProducer:
    """Produces the resumable streams of this process (`streams`, by request id).

    Shares its collaborators with the `ResumeService` that owns it: `live` (background calls
    running here), `readers` (readers here, by request id: a stream read here is wanted) and
    `cancel_handlers` are the service's own, not copies.
    """

    def __init__(
        self,
        config: ResumeConfig,
        local: MemoryStreamStore,
        store: StreamStore,
        control: StreamControl,
        failover: Failover | None,
        errors: StoreErrors,
        *,
        live: dict[str, Call],
        readers: Mapping[str, int],
        cancel_handlers: list[CancelLocal],
        interval: float,
    ) -> None:
        self.config = config
        self.local = local
        self.store = store
        self.control = control
        self.failover = failover
        self.errors = errors
        self.live = live
        self.readers = readers
        self.cancel_handlers = cancel_handlers
        self.interval = interval
        self.streams: dict[str, Produced] = {}
        self._serving_cancels = False

    @property
    def shared(self) -> bool:
        return self.store is not self.local

    @property
    def lease_seconds(self) -> float:
        return max(2.0, self.interval * 4)

    def start(
        self,
        task_group: TaskGroup,
        request_id: str,
        dialect: str,
        call: Call,
        produced: Produced,
    ) -> None:
        """Produce `call` as stream `request_id` in `task_group`."""
        self.streams[request_id] = produced
        task_group.start_soon(self._produce, request_id, dialect, call, produced)
        if self.shared and not self._serving_cancels:
            self._serving_cancels = True
            task_group.start_soon(self._serve_cancels)

    async def _produce(self, request_id: str, dialect: str, call: Call, produced: Produced) -> None:
        meta: dict[str, str] | None = None
        if self.shared and not produced.adopted:
            # Generating starts at once; the writer makes the stream known meanwhile (its
            # round trips were a tenth of a 2,000-token echo stream when they came first).
            meta = self._describe(call, produced)
            produced.sharing = True
        else:
            await self._share(request_id, produced)
        error: TokenwireError | None = None
        try:
            with produced.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch, request_id, produced)
                    # The writer ends on its own once it flushed the last payload.
                    async with anyio.create_task_group() as writer:
                        if produced.shared or produced.sharing:
                            writer.start_soon(self._flush, request_id, dialect, meta, produced)
                            # Its setup goes out before the first decode step runs.
                            await anyio.lowlevel.checkpoint()
                        try:
                            recorder = produced.recorder
                            observe = None if recorder is None else recorder.observe
                            async with closing(call.payloads(None, observe)) as payloads:
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
            produced.ready.set()  # (set already, unless it ended before its writer began)
            produced.ended.set()
            with anyio.CancelScope(shield=True):
                await self._unshare(request_id, produced, error)
        if produced.stopped or not produced.scope.cancel_called:
            # A finished stream stays readable for the grace period, for late reconnects.
            await anyio.sleep(self.config.grace_seconds)
        self.streams.pop(request_id, None)
        self.local.discard(request_id)

    def _keep(self, request_id: str, produced: Produced, payload: Payload) -> None:
        if produced.recorder is not None and not produced.recorder.keep(payload):
            return  # replayed by a continuation: the replica that died stored it
        produced.sent = True
        self.local.put(request_id, payload)
        if produced.shared or produced.sharing:
            produced.pending.append(payload)
            produced.wake.set()

    def _describe(self, call: Call, produced: Produced) -> dict[str, str]:
        """The meta fields of a stream this process starts sharing; decides whether it is
        recorded for failover (before its first event: the recorder taps them all)."""
        meta = {"owner": self.control.replica, "request": describe_request(call)}
        if self.failover is not None and self.failover.enabled and not produced.background:
            fields = self.failover.describe(call)
            meta.update(fields)
            produced.recorder = Recorder() if fields else None
        return meta

    async def _share(self, request_id: str, produced: Produced) -> None:
        """Mark the stream read (a local stream, or one adopted: its lease is held)."""
        try:
            await self.control.touch(request_id, self.config.grace_seconds)
        except StreamStoreError as exc:
            self.errors.failed("create", exc)
        else:
            if self.shared:
                produced.shared = True  # the store has it; the lease was taken to adopt it
                produced.generation = produced.adopted
        finally:
            produced.ready.set()

    async def _create(
        self, request_id: str, dialect: str, meta: dict[str, str], produced: Produced
    ) -> None:
        """Make the stream known to other replicas: presence, lease, meta hash, in order (in
        one round trip where the store can)."""
        try:
            generation, created = await self._claim_and_create(request_id, dialect, meta)
            if generation is None:
                logger.warning("stream %s is produced elsewhere; not shared", request_id)
            elif not created:
                logger.warning("stream %s exists in the store already; not shared", request_id)
                # The lease was taken for nothing: free it for whoever produces the stream.
                await self.control.release(request_id, generation)
            else:
                produced.generation = generation
                produced.shared = True
        except StreamStoreError as exc:
            self.errors.failed("create", exc)
        finally:
            produced.sharing = False
            if not produced.shared:
                produced.pending = []
                if produced.recorder is not None:
                    produced.recorder.recording = False  # nothing will take its records
            produced.ready.set()

    async def _claim_and_create(
        self, request_id: str, dialect: str, meta: dict[str, str]
    ) -> tuple[int | None, bool]:
        """Touch, claim and create the stream: the lease generation (None: held elsewhere)
        and whether it was created."""
        store, grace = self.store, self.config.grace_seconds
        if isinstance(store, CreatesClaimed) and store.shares_control(self.control):
            return await store.create_claimed(
                request_id,
                dialect,
                meta,
                replica=self.control.replica,
                lease_seconds=self.lease_seconds,
                readers_seconds=grace,
            )
        await self.control.touch(request_id, grace)
        generation = await self.control.claim(request_id, self.lease_seconds)
        if generation is None:
            return None, False
        return generation, await store.create(
            request_id, dialect, meta | {"generation": str(generation)}
        )

    async def _unshare(
        self, request_id: str, produced: Produced, error: TokenwireError | None
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
                await self.control.release(request_id, produced.generation)
                if produced.recorder is not None and self.failover is not None:
                    await self.failover.forget(request_id)
            except StreamStoreError as exc:
                self.errors.failed("append", exc)

    async def _flush(
        self, request_id: str, dialect: str, meta: dict[str, str] | None, produced: Produced
    ) -> None:
        """Make the stream known (`meta`: not yet), then write what accumulated since the last
        flush in one round trip (a pipeline)."""
        if meta is not None:
            # Shielded: a lease taken must be recorded, so that it is released.
            with anyio.CancelScope(shield=True):
                await self._create(request_id, dialect, meta, produced)
        while produced.shared:
            await produced.wake.wait()
            # Let a few decode steps accumulate: a round trip per payload costs the producer's
            # CPU (half the echo throughput); readers here never wait for it. The last batch
            # waits too, so that a client here gets its stream's end before this process
            # spends its CPU on storing it (a 2,000-token echo stream's last write is ~1 ms).
            await anyio.sleep(FLUSH_LINGER_SECONDS)
            produced.wake = anyio.Event()
            batch, produced.pending = produced.pending, []
            if batch and produced.shared:
                try:
                    self._record(request_id, produced)
                    await self.store.append(request_id, batch)
                except StreamStoreError as exc:
                    produced.shared = False
                    self.errors.failed("append", exc)
            if produced.done and not produced.pending:
                return

    def _record(self, request_id: str, produced: Produced) -> None:
        """Keep the tokens of the payloads about to be written (for failover), before them."""
        if produced.recorder is not None and self.failover is not None:
            self.failover.record(request_id, produced.recorder)

    async def _watch(self, request_id: str, produced: Produced) -> None:
        """Renew the lease, honour cancels, and cancel once no reader anywhere wants it."""
        while True:
            await anyio.sleep(self.interval)
            try:
                if produced.shared:
                    renewed = await self.control.renew(
                        request_id, produced.generation, self.lease_seconds
                    )
                    if not renewed:
                        logger.warning("lost the lease of stream %s; stopping it", request_id)
                        # Another replica produces it now (it adopted it): leave the store
                        # to that one, neither writing, removing nor ending the stream there.
                        produced.shared = False
                        produced.scope.cancel()
                        return
                    if not produced.cancelled and await self.control.cancel_requested(request_id):
                        self.cancel_here(request_id)
                if (
                    not produced.background
                    and request_id not in self.readers
                    and not await self.control.present(request_id)
                ):
                    produced.scope.cancel()
                    return
            except StreamStoreError as exc:
                # Without the store nobody elsewhere can read it: only readers here count.
                self.errors.failed("control", exc)
                produced.shared = False
                produced.wake.set()
                if not produced.background and request_id not in self.readers:
                    produced.scope.cancel()
                    return

    def cancel_here(self, request_id: str) -> int:
        produced = self.streams.get(request_id)
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
        await self.control.serve_cancels(self.cancel_here)


def describe_request(call: Call) -> str:
    """The parsed request as JSON, as far as it is JSON-able (for a replica that takes over)."""
    try:
        fields = asdict(call.request)
    except TypeError:
        return "{}"
    return json.dumps(fields, default=lambda value: None)[:65536]
