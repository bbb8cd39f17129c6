"""Failover: a replica continues a stream whose owner died.

The owner records, beside each write of payloads, the token ids of the events that made
them (`Recorder`, kept by `tokenwire.stores.redis_failover`). When its lease expires without an end,
a replica with a reader waiting on the stream takes the lease (fenced: the lease is `SET NX`,
so one replica wins) and continues (`Failover.take_over`): it parses the stored request body
again with the dialect's endpoint, gives the exchange the identity the owner's had (OpenAI's
`created`), and runs the pipeline with the recorded tokens as the request's `continuation`.
The backend replays them as the same events, so the exchange renders the same payloads
again: those already stored are checked against the store and not written twice; the rest
continue the stream's numbering. A backend that cannot continue (not `ContinuesGeneration`)
leaves the stream to end as before.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import anyio

from tokenwire.endpoint import PROGRESS_EVENT, Call, Endpoint
from tokenwire.errors import GenerationError, TokenwireError
from tokenwire.events import Event, Progress, TokenDelta, ToolCallDelta
from tokenwire.interfaces import ContinuesGeneration, KeepsIdentity, Payload
from tokenwire.stores.stream_store import StreamStoreError
from tokenwire.stores.token_record import pack

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from tokenwire.stores.redis_control import RedisStreamControl
    from tokenwire.stores.redis_store import RedisStreamStore

logger = logging.getLogger("tokenwire.resume")

_RECORDED = (TokenDelta, ToolCallDelta)  # a tuple: `A | B` would build a union per event


@dataclass(eq=False, slots=True)
class Recorder:
    """Numbers a produced stream's payloads and notes which event's tokens made which.

    `kept` is the number of the next payload. A continuation starts it where its own
    rendering (without progress payloads) begins, drops the payloads numbered below
    `resume_from` after checking them against `expected`, and skips recording the groups it
    replays (`skip_groups`).
    """

    kept: int = 0
    resume_from: int = 0
    expected: Mapping[int, Payload] = field(default_factory=dict)
    skip_groups: int = 0
    progress: int | None = None  # progress payloads before the first event's
    progress_written: bool = False
    # The groups noted since the last take, flat: where each starts, how many ids it has,
    # and the ids. No object per token is kept until the flush (the events' id tuples were:
    # on the echo backend they lived a whole stream, a third more young garbage collections
    # than without recording, and more full ones).
    starts: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    recording: bool = True  # False: the stream is not shared after all, note no more groups

    def observe(self, event: Event) -> None:
        """Note `event`'s tokens with the payload number it starts at (`Call.payloads` calls
        this before rendering each event, progress ones included, so the previous event's
        payloads are kept by then). An observer, not a generator wrapped around the events:
        one more frame per event cost ~0.2 µs a token, 3% of the echo server's budget."""
        if self.progress is None and not isinstance(event, Progress):
            self.progress = self.kept
        if isinstance(event, _RECORDED) and event.token_ids and self.recording:
            if self.skip_groups:
                self.skip_groups -= 1
            else:
                ids = event.token_ids
                self.starts.append(self.kept)
                self.lengths.append(len(ids))
                self.ids.extend(ids)

    def keep(self, payload: Payload) -> bool:
        """Number `payload`; False when it is a replayed one, stored already.

        Raises:
            GenerationError: the replay rendered other bytes than the owner stored.
        """
        seq = self.kept
        self.kept += 1
        if seq >= self.resume_from:
            return True
        stored = self.expected.get(seq)
        if stored is not None and stored != payload:
            logger.error("failover: replayed payload %d differs from the stored one", seq)
            raise GenerationError("The stream could not be continued after its server failed.")
        return False

    def take(self) -> bytes | None:
        """The record of the groups noted since the last take (None: nothing to write)."""
        if not self.starts and (self.progress is None or self.progress_written):
            return None
        # Encoded by C loops (`token_record`): as JSON text this cost ~0.4 µs a token, and
        # built as lists for json.dumps it made two tracked objects per token besides.
        progress = None
        if self.progress is not None and not self.progress_written:
            progress = self.progress
            self.progress_written = True
        record = pack(self.starts, self.lengths, self.ids, self.kept, progress)
        self.starts, self.lengths, self.ids = [], [], []
        return record


@dataclass(frozen=True, slots=True)
class Adoption:
    """A stream this replica took over: the call to run and where its numbering resumes."""

    call: Call
    dialect: str
    generation: int
    recorder: Recorder


class Failover:
    """Records streams for failover and adopts orphaned ones, through the shared Redis.

    `endpoints` (by dialect name) and `backend` are handed over once the app is built; until
    then, and with a backend that cannot continue, nothing is recorded or adopted.
    """

    def __init__(
        self,
        client: Redis,
        store: RedisStreamStore,
        control: RedisStreamControl,
        ttl_seconds: float,
    ) -> None:
        self.client = client
        self.store = store
        self.control = control
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.endpoints: Mapping[str, Endpoint] = {}
        self.backend: ContinuesGeneration | None = None

    def serve(self, endpoints: Mapping[str, Endpoint], backend: object) -> None:
        self.endpoints = endpoints
        self.backend = backend if isinstance(backend, ContinuesGeneration) else None

    @property
    def enabled(self) -> bool:
        return self.backend is not None and bool(self.endpoints)

    def describe(self, call: Call) -> dict[str, str]:
        """Meta fields a continuing replica rebuilds the call from (none when it cannot)."""
        body = call.body
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
        except UnicodeDecodeError:
            return {}
        exchange = call.exchange
        identity = dict(exchange.identity()) if isinstance(exchange, KeepsIdentity) else {}
        deadline = call.request.deadline
        return {
            "body": text,
            "path": json.dumps(dict(call.path_params)),
            "identity": json.dumps(identity),
            "transport": call.request.transport,
            "progress": "1" if call.progress else "0",
            "deadline_at": ""
            if deadline is None
            else repr(time.time() + deadline - anyio.current_time()),
        }

    def record(self, request_id: str, recorder: Recorder) -> None:
        """Have the groups noted since the last write written with the next append of the
        store, before its payloads (call just before appending them)."""
        record = recorder.take()
        if record is not None:
            self.store.note_tokens(request_id, record)

    async def forget(self, request_id: str) -> None:
        """The stream ended: its tokens are no longer needed."""
        from tokenwire.stores.redis_failover import forget

        await forget(self.client, request_id)

    async def orphaned(self, request_id: str) -> bool:
        from tokenwire.stores.redis_failover import orphaned

        return await orphaned(self.client, request_id)

    async def adopt(self, request_id: str, lease_seconds: float) -> Adoption | None:
        """Take over `request_id` when it is orphaned and this replica wins its lease; None
        when another replica holds it, or it cannot be continued here.

        Raises:
            StreamStoreError: Redis failed.
        """
        from tokenwire.stores.redis_failover import kept_payloads, load_orphan

        backend = self.backend
        if backend is None or not await self.orphaned(request_id):
            return None
        generation = await self.control.claim(request_id, lease_seconds)
        if generation is None:
            return None  # another replica adopted it first
        adoption = None
        try:
            orphan = await load_orphan(self.client, request_id)
            endpoint = None if orphan is None else self.endpoints.get(orphan.meta["dialect"])
            if orphan is not None and endpoint is not None:
                call = await _rebuild(endpoint, request_id, orphan.meta, orphan.groups)
                if call is not None and backend.can_continue(call.request):
                    expected = await kept_payloads(self.client, request_id, orphan.next_seq)
                    progress = orphan.progress
                    if not orphan.groups:  # died before its first token was recorded
                        progress = sum(p.event == PROGRESS_EVENT for p in expected.values())
                    recorder = Recorder(
                        kept=progress,
                        resume_from=orphan.next_seq,
                        expected=expected,
                        skip_groups=len(orphan.groups),
                        progress=progress,
                        progress_written=bool(orphan.groups),
                    )
                    owner = f"{self.control.replica}:{generation}"  # the lease's token
                    self.store.resume_at(request_id, orphan.next_seq, owner)
                    adoption = Adoption(call, orphan.meta["dialect"], generation, recorder)
        finally:
            if adoption is None:
                with anyio.CancelScope(shield=True):
                    await self.control.release(request_id, generation)
        if adoption is not None:
            logger.warning(
                "adopted stream %s (lease generation %d, from payload %d)",
                request_id,
                generation,
                adoption.recorder.resume_from,
            )
        return adoption


async def _rebuild(
    endpoint: Endpoint,
    request_id: str,
    meta: Mapping[str, str],
    groups: tuple[tuple[int, ...], ...],
) -> Call | None:
    """The call the owner ran, parsed again (what it names brought in first, as a stored
    response it continues), continuing after `groups`."""
    try:
        call = await endpoint.open(
            meta["body"], json.loads(meta.get("path", "{}")), request_id, meta.get("transport", "")
        )
    except (TokenwireError, ValueError, KeyError) as exc:
        logger.warning("stream %s cannot be continued: %s", request_id, exc)
        return None
    if isinstance(call.exchange, KeepsIdentity):
        call.exchange.restore_identity(json.loads(meta.get("identity", "{}")))
    deadline = call.request.deadline
    if meta.get("deadline_at"):
        deadline = anyio.current_time() + float(meta["deadline_at"]) - time.time()
    call.request = replace(call.request, continuation=groups, deadline=deadline)
    # Progress payloads went out before the first token, if at all: the stored ones count.
    call.progress = False
    return call


async def adopt_or_wait(
    failover: Failover, request_id: str, lease_seconds: float
) -> Adoption | None:
    """`adopt`, with Redis failures logged rather than raised (the reader then ends)."""
    try:
        return await failover.adopt(request_id, lease_seconds)
    except StreamStoreError as exc:
        logger.warning("stream %s: failover failed (%s)", request_id, exc)
        return None
