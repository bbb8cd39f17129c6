"""The decode loop: one task owns the model and runs the whole batch once per step.

Each iteration frees the slots of finished or cancelled requests, admits waiting ones,
runs up to `prefill_chunk` prompt tokens, then one decode step for every running sequence:
a long prompt arrives in chunks between decode steps, so running streams never freeze.
Model runs (and sampling) go to a worker thread, as ORT releases the GIL. Sampled tokens
go to a second task, the emitter, which detokenizes and streams them while the worker
already runs the next step: the per-token Python work overlaps the model instead of
adding to it. Everything but the model run stays on the event loop, so the scheduler
needs no locks.
"""

from __future__ import annotations

import logging
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


class DecodeLoop:
    """Drives `runner` with the work `scheduler` holds; `run` is the loop task."""

    def __init__(self, runner: ModelRunner, scheduler: Scheduler, *, prefill_chunk: int) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.prefill_chunk = prefill_chunk
        self.steps = 0
        self.prefill_chunks = 0
        self.last_batch = 0
        self._wake = anyio.Event()
        self._limiter = anyio.CapacityLimiter(1)
        self._sampled_send: MemoryObjectSendStream[Sampled]

    def wake(self) -> None:
        self._wake.set()

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
        self.scheduler.admit()

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
                continue
            self.prefill_chunks += 1
            generation.prefilled = chunk.end
            if token is not None:
                self.scheduler.start_decoding(generation)
                generation.schedule(token)
                await self._sampled_send.send(([generation], [token]))
        return bool(plan)

    def _prefill_step(self, chunk: PrefillChunk) -> int | None:
        generation = chunk.generation
        assert generation.slot is not None
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
            return True
        self.steps += 1
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
