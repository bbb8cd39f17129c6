"""The decode loop: one task owns the model and runs the whole batch once per step.

Each iteration frees the slots of finished or cancelled requests, admits waiting ones,
runs up to `prefill_chunk` prompt tokens, then one decode step for every running sequence:
a long prompt arrives in chunks between decode steps, so running streams never freeze.
Model runs (and sampling) go to a worker thread, as ORT releases the GIL. Sampled tokens
go to a second task, the emitter, which detokenizes and streams them while the worker
already runs the next step: the per-token Python work overlaps the model instead of
adding to it. Everything but the model run stays on the event loop, so the scheduler
needs no locks.

With a prefix cache, an admitted request's longest cached prefix is found on the loop; its
blocks are copied into the slot in the worker, just before the first chunk, so only the
rest is prefilled. After the last chunk the prompt's new whole blocks are copied out to
the cache, once the first token is on its way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import anyio
import numpy as np
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tokenwire.backends.onnx.generation import Generation
from tokenwire.backends.onnx.runner import ModelRunner
from tokenwire.backends.onnx.scheduler import BackendStats, PrefillChunk, Scheduler
from tokenwire.errors import GenerationError, TokenwireError

logger = logging.getLogger("tokenwire.onnx")

Sampled = tuple[Sequence[Generation], Sequence[int]]

# Health: this many model runs of one kind (prefill, decode) failing in a row mark the
# backend unhealthy, and readiness turns 503. It reports healthy again after a success,
# or once no run has failed for RECOVERY_SECONDS, so that some traffic may probe it.
UNHEALTHY_AFTER = 3
RECOVERY_SECONDS = 30.0


class DecodeLoop:
    """Drives `runner` with the work `scheduler` holds; `run` is the loop task.

    `prefix_namespace` seeds the prefix cache's keys (the model), and `kv_token_bytes` is
    the KV one token takes, for the cache's byte budget.
    """

    def __init__(
        self,
        runner: ModelRunner,
        scheduler: Scheduler,
        *,
        prefill_chunk: int,
        prefix_namespace: str = "",
        kv_token_bytes: int = 0,
    ) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.prefill_chunk = prefill_chunk
        self.prefix_namespace = prefix_namespace
        self.kv_token_bytes = kv_token_bytes
        self.steps = 0
        self.prefill_chunks = 0
        self.last_batch = 0
        self.failed_prefills = 0  # consecutive, like failed_decodes
        self.failed_decodes = 0
        self.last_failure = -RECOVERY_SECONDS
        self._wake = anyio.Event()
        self._limiter = anyio.CapacityLimiter(1)
        self._sampled_send: MemoryObjectSendStream[Sampled]

    def wake(self) -> None:
        self._wake.set()

    @property
    def healthy(self) -> bool:
        """False while the model keeps failing (see UNHEALTHY_AFTER)."""
        failing = max(self.failed_prefills, self.failed_decodes) >= UNHEALTHY_AFTER
        return not failing or time.monotonic() - self.last_failure >= RECOVERY_SECONDS

    def stats(self) -> BackendStats:
        s = self.scheduler
        return BackendStats(
            running=len(s.running),
            prefilling=len(s.prefilling),
            waiting=len(s.waiting),
            free_slots=s.free_slots,
            steps=self.steps,
            prefill_chunks=self.prefill_chunks,
            last_batch=self.last_batch,
        )

    async def run(self) -> None:
        # A few steps of slack: the emitter normally trails the model by one step.
        send, receive = anyio.create_memory_object_stream[Sampled](4)
        self._sampled_send = send
        with send, receive:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self._emit, receive, name="tokenwire-onnx-emitter")
                await self._loop()

    async def _loop(self) -> None:
        while True:
            try:
                self._housekeep()
                busy = await self._prefill()
                self._housekeep()
                busy = await self._decode() or busy
            except Exception as exc:
                # A bug here must not strand every waiting client: fail what is held.
                logger.exception("the decode loop failed; failing the requests it held")
                for generation in self.scheduler.drain():
                    generation.fail(_wrap(exc))
                    generation.retire()
                busy = False
            if not busy:
                await self._wake.wait()
                self._wake = anyio.Event()

    def _housekeep(self) -> None:
        """Free the slots of finished and cancelled requests; admit waiting ones."""
        for slot in self.scheduler.reap():
            self.runner.release(slot)
        for generation in self.scheduler.admit():
            self._match_prefix(generation)

    def _match_prefix(self, generation: Generation) -> None:
        cache = generation.prefix_cache
        if cache is None:
            return
        # At least the last prompt token is prefilled: its logits give the first token.
        match = cache.lookup(
            generation.prompt_ids,
            namespace=self.prefix_namespace,
            limit=generation.prompt_tokens - 1,
        )
        if match.tokens:
            generation.reuse = match
            generation.prefilled = generation.cached_tokens = match.tokens

    async def _prefill(self) -> bool:
        plan = self.scheduler.prefill_plan(self.prefill_chunk)
        for chunk in plan:
            generation = chunk.generation
            try:
                token = await anyio.to_thread.run_sync(
                    self._prefill_step, chunk, limiter=self._limiter
                )
            except Exception as exc:
                logger.exception("prefill failed (request %s)", generation.request_id)
                generation.fail(_wrap(exc))
                self.failed_prefills += 1
                self.last_failure = time.monotonic()
                continue
            self.prefill_chunks += 1
            self.failed_prefills = 0
            generation.prefilled = chunk.end
            if token is not None:
                self.scheduler.start_decoding(generation)
                generation.schedule(token)
                await self._sampled_send.send(([generation], [token]))
                if generation.prefix_cache is not None:
                    # Before the next decode step: the concat layout's prompt KV is still
                    # the slot's own then (the step regroups it into the batch).
                    await anyio.to_thread.run_sync(
                        self._offer_prefix, generation, limiter=self._limiter
                    )
        return bool(plan)

    def _offer_prefix(self, generation: Generation) -> None:
        cache, slot = generation.prefix_cache, generation.slot
        assert cache is not None and slot is not None
        size = cache.block_tokens

        def copy(first: int, count: int) -> list[np.ndarray]:
            return self.runner.snapshot(slot, first * size, count, size)

        try:
            cache.insert(
                generation.prompt_ids,
                copy,
                block_bytes=self.kv_token_bytes * size,
                namespace=self.prefix_namespace,
            )
        except Exception:
            # The cache is an optimisation: failing to fill it must not fail the request.
            logger.exception("offering prompt blocks to the prefix cache failed")

    def _prefill_step(self, chunk: PrefillChunk) -> int | None:
        generation = chunk.generation
        assert generation.slot is not None
        match, generation.reuse = generation.reuse, None
        if match is not None:
            self.runner.restore(generation.slot, [b.kv for b in match.blocks], match.tokens)
        logits = self.runner.prefill(
            generation.slot, generation.prompt_ids[chunk.start : chunk.end]
        )
        return _sample(generation, logits) if chunk.last else None

    async def _decode(self) -> bool:
        batch = [g for g in self.scheduler.running if g.decoding]
        if not batch:
            return False
        try:
            tokens = await anyio.to_thread.run_sync(self._decode_step, batch, limiter=self._limiter)
        except Exception as exc:
            logger.exception("decode step failed for %d requests", len(batch))
            for generation in batch:
                generation.fail(_wrap(exc))
            self.failed_decodes += 1
            self.last_failure = time.monotonic()
            return True
        self.steps += 1
        self.failed_decodes = 0
        self.last_batch = len(batch)
        for generation, token in zip(batch, tokens, strict=True):
            generation.schedule(token)
        await self._sampled_send.send((batch, tokens))
        return True

    def _decode_step(self, batch: Sequence[Generation]) -> list[int]:
        slots = [g.slot for g in batch]
        logits = self.runner.decode(slots, [g.last_token for g in batch])  # type: ignore[arg-type]
        return [_sample(g, row) for g, row in zip(batch, logits, strict=True)]

    async def _emit(self, sampled: MemoryObjectReceiveStream[Sampled]) -> None:
        """Turn sampled tokens into events, in step order, while the next step runs."""
        async for batch, tokens in sampled:
            for generation, token in zip(batch, tokens, strict=True):
                if generation.active:
                    _accept(generation, token)
            self.wake()  # a finished sequence frees its slot at the next boundary


def _sample(generation: Generation, logits: np.ndarray) -> int:
    try:
        return generation.sampler(logits)
    except Exception:
        # One request's bad sampling must not fail the batch; -1 makes `_accept` fail it.
        logger.exception("sampling failed (request %s)", generation.request_id)
        generation.exhausted = True
        return -1


def _accept(generation: Generation, token: int) -> None:
    try:
        if token < 0:
            raise GenerationError("Sampling the next token failed.")
        generation.accept(token)
    except Exception as exc:
        logger.exception("streaming a token failed (request %s)", generation.request_id)
        generation.fail(_wrap(exc))


def _wrap(exc: Exception) -> TokenwireError:
    if isinstance(exc, TokenwireError):
        return exc
    error = GenerationError("The model failed while generating a response.")
    error.__cause__ = exc
    return error
