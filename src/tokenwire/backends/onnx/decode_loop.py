"""The decode loop: one task owns the model and runs the whole batch once per step.

Each iteration frees the slots of finished or cancelled requests, admits waiting ones,
runs prompt work (`prefill_planner`: fresh prompts whole and together, then chunks), then
decode steps for every running sequence: a long prompt arrives in chunks between decode
steps, so running streams never freeze. While sequences are decoding, prompt work is cut to
the chunk budget of model time (fixed, or from a latency goal), which bounds the gap it
adds between two tokens of a running stream.

Model runs (and sampling) go to a worker thread, as ORT releases the GIL. While the batch
stays the same, the worker runs decode steps back to back, publishing each step's tokens
as it goes, and returns to the loop only when the loop has work for it (a request
arrived, left or finished, or the emitter lags): a step never waits for the event loop.
A second task, the emitter, detokenizes and streams the published tokens while the
worker already runs the next step: the per-token Python work overlaps the model instead
of adding to it. The scheduler is touched only on the event loop, so it needs no locks;
the worker reads a generation's flags, each one a single attribute.

With a prefix cache (`prefix_reuse`), an admitted request's longest cached prefix is found
on the loop; its blocks are copied into the slot in the worker, just before the first chunk,
so only the rest is prefilled. After the last chunk the prompt's new whole blocks are copied
out to the cache, once the first token is on its way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence

import anyio
from anyio.lowlevel import EventLoopToken, current_token

from tokenwire.backends.onnx._outcomes import accept_run, sample_row, wrap_error
from tokenwire.backends.onnx.generation import Generation
from tokenwire.backends.onnx.prefill_planner import (
    MIN_CHUNK,
    LatencyGoal,
    PrefillRun,
    budget_tokens,
    chunk_seconds,
    plan_runs,
    update_estimate,
)
from tokenwire.backends.onnx.prefix_reuse import match_prefix, offer_prefix
from tokenwire.backends.onnx.runner import ModelRunner
from tokenwire.backends.onnx.scheduler import BackendStats, PrefillChunk, Scheduler
from tokenwire.backends.onnx.speculation import Speculator

logger = logging.getLogger("tokenwire.onnx")

Sampled = tuple[Sequence[Generation], Sequence[Sequence[int]]]
"""One step's sequences and the tokens sampled for each (several when drafts were accepted)."""

# Health: this many model runs of one kind (prefill, decode) failing in a row mark the
# backend unhealthy, and readiness turns 503. It reports healthy again after a success,
# or once no run has failed for RECOVERY_SECONDS, so that some traffic may probe it.
UNHEALTHY_AFTER = 3
RECOVERY_SECONDS = 30.0

# Published steps the emitter may trail the model by before the worker stops running ahead.
EMITTER_LAG = 4


class DecodeLoop:
    """Drives `runner` with the work `scheduler` holds; `run` is the loop task.

    `prefix_namespace` seeds the prefix cache's keys (the model), and `kv_token_bytes` is
    the KV one token takes, for the cache's byte budget. With a `speculator`, decode steps
    verify drafted tokens when it proposes any. A `goal` sets the chunk budget in place of
    `prefill_budget`; `batch_prefill` False keeps the old plan (one prompt per run, chunks
    cut to the budget's end), for comparison.
    """

    def __init__(
        self,
        runner: ModelRunner,
        scheduler: Scheduler,
        *,
        prefill_chunk: int,
        prefill_budget: float | None = None,
        prefix_namespace: str = "",
        kv_token_bytes: int = 0,
        speculator: Speculator | None = None,
        goal: LatencyGoal | None = None,
        batch_prefill: bool = True,
    ) -> None:
        self.runner = runner
        self.speculator = speculator
        self.scheduler = scheduler
        self.prefill_chunk = prefill_chunk
        self.prefill_budget = prefill_budget
        self.prefill_token_seconds: float | None = None
        """Running estimate of the model time one prompt token takes (None until timed)."""
        self.goal = goal or LatencyGoal()
        self.batch_prefill = batch_prefill
        self.decode_step_seconds: float | None = None
        """Running estimate of one decode step's time, sampling included (None until timed)."""
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
        # Set (on the loop) when the loop has work: a worker running ahead returns for it.
        self._attention = threading.Event()
        self._stopping = False
        # Steps sampled but not yet streamed, appended by the worker, taken by the emitter.
        self._published: deque[Sampled] = deque()
        self._published_event = anyio.Event()
        self._caught_up = anyio.Event()
        self._token: EventLoopToken
        # The worker's "published" notices, passed on to the loop by the notifier thread.
        self._notices: queue.SimpleQueue[bool] = queue.SimpleQueue()

    def wake(self) -> None:
        """Tell the loop it has work (a request arrived, left or finished): call on the loop."""
        self._wake.set()
        self._attention.set()

    def stop(self) -> None:
        """Make a worker running ahead return after its step (before cancelling the loop)."""
        self._stopping = True
        self._attention.set()

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
        self._token = current_token()
        async with anyio.create_task_group() as task_group:
            notifier = threading.Thread(
                target=self._notify, name="tokenwire-onnx-notifier", daemon=True
            )
            notifier.start()
            try:
                task_group.start_soon(self._emit, name="tokenwire-onnx-emitter")
                await self._loop()
            finally:
                self._notices.put(False)

    def _notify(self) -> None:
        """Wake the emitter for each step the worker published (in its own thread).

        Waking the event loop writes to its self-pipe, which releases the GIL; from the
        worker, that would hand the GIL to the loop for its whole turn of streaming, and the
        next step would start only after it. From here the wake-up happens while the worker
        is already inside the next step's run, which needs no GIL.
        """
        while self._notices.get():
            while not self._notices.empty():  # coalesce: one wake-up streams every step
                if not self._notices.get():
                    return
            try:
                anyio.from_thread.run_sync(self._notify_emitter, token=self._token)
            except (RuntimeError, anyio.RunFinishedError):  # the loop has stopped
                return

    async def _loop(self) -> None:
        while True:
            # Cleared before the boundary's work: a wake from here on makes the worker
            # come back after one step.
            self._attention.clear()
            try:
                self._housekeep()
                busy = await self._prefill()
                self._housekeep()
                busy = await self._decode() or busy
            except Exception as exc:
                # A bug here must not strand every waiting client: fail what is held.
                logger.exception("the decode loop failed; failing the requests it held")
                for generation in self.scheduler.drain():
                    generation.fail(wrap_error(exc))
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
            match_prefix(generation, self.prefix_namespace)
            # Noted once the cached prefix is known, so the note's counts match the usage.
            generation.note("prefill")

    def prefill_tokens(self) -> int:
        """Prompt tokens to run before the next decode step.

        `prefill_chunk` when nothing is decoding (the prompt's TTFT is all that waits);
        beside decoding streams, what fits the chunk budget (`chunk_seconds`: the goal's, or
        the fixed `prefill_budget`) at the measured speed, raised to what a target TTFT
        needs for the oldest prompt.
        """
        if not any(g.decoding for g in self.scheduler.running):
            return self.prefill_chunk
        return budget_tokens(
            chunk_seconds(self.goal, self.decode_step_seconds, self.prefill_budget),
            self.prefill_token_seconds,
            self.prefill_chunk,
            self.goal,
            next((g for g in self.scheduler.prefilling if g.active), None),
            floor=MIN_CHUNK if self.batch_prefill else 1,
        )

    async def _prefill(self) -> bool:
        budget = self.prefill_tokens()
        runs: list[PrefillRun]
        if self.batch_prefill:
            runs = plan_runs(self.scheduler.prefilling, budget, self.runner.batch_slack)
        else:
            runs = [(chunk,) for chunk in self.scheduler.prefill_plan(budget)]
        for run in runs:
            try:
                tokens = await anyio.to_thread.run_sync(
                    self._prefill_run, run, limiter=self._limiter
                )
            except Exception as exc:
                for chunk in run:
                    logger.exception("prefill failed (request %s)", chunk.generation.request_id)
                    chunk.generation.fail(wrap_error(exc))
                self.failed_prefills += 1
                self.last_failure = time.monotonic()
                continue
            self.prefill_chunks += 1
            self.failed_prefills = 0
            for chunk, token in zip(run, tokens, strict=True):
                await self._prefilled(chunk, token)
        return bool(runs)

    async def _prefilled(self, chunk: PrefillChunk, token: int | None) -> None:
        generation = chunk.generation
        generation.prefilled = chunk.end
        if token is None:
            generation.note("prefill")  # one note per chunk: the client's progress
            return
        self.scheduler.start_decoding(generation)
        generation.schedule(token)
        self._published.append(([generation], [(token,)]))
        self._published_event.set()
        if generation.prompt_cache is not None:
            # Before the next decode step: the concat layout's prompt KV is still
            # the slot's own then (the step regroups it into the batch).
            await anyio.to_thread.run_sync(
                offer_prefix,
                self.runner,
                generation,
                self.prefix_namespace,
                self.kv_token_bytes,
                limiter=self._limiter,
            )

    def _prefill_run(self, run: PrefillRun) -> list[int | None]:
        if len(run) == 1:
            return [self._prefill_step(run[0])]
        batch = [chunk.generation for chunk in run]
        assert batch[0].slot is not None
        started = time.perf_counter()
        logits = self.runner.prefill_fresh(batch[0].slot, [g.prompt_ids for g in batch])
        width = max(g.prompt_tokens for g in batch)
        self._time_prefill(time.perf_counter() - started, width * len(batch))
        return [sample_row(g, row) for g, row in zip(batch, logits, strict=True)]

    def _prefill_step(self, chunk: PrefillChunk) -> int | None:
        generation = chunk.generation
        assert generation.slot is not None
        match, generation.reuse = generation.reuse, None
        if match is not None:
            self.runner.restore(generation.slot, [b.kv for b in match.blocks], match.tokens)
        started = time.perf_counter()
        logits = self.runner.prefill(
            generation.slot, generation.prompt_ids[chunk.start : chunk.end]
        )
        self._time_prefill(time.perf_counter() - started, chunk.end - chunk.start)
        return sample_row(generation, logits) if chunk.last else None

    def _time_prefill(self, seconds: float, tokens: int) -> None:
        if self.batch_prefill and tokens < MIN_CHUNK and self.prefill_token_seconds is not None:
            # A run's fixed cost (a weight read) dominates a small chunk: timed per token, it
            # would shrink the next chunks, and so on down to a token per boundary (a 37-token
            # prompt took 3.4 s beside 8 streams on 2 cores). Only MIN_CHUNK or more is timed.
            return
        self.prefill_token_seconds = update_estimate(self.prefill_token_seconds, seconds / tokens)

    async def _decode(self) -> bool:
        batch = [g for g in self.scheduler.running if g.decoding]
        if not batch:
            return False
        while len(self._published) >= EMITTER_LAG:
            self._caught_up = anyio.Event()
            await self._caught_up.wait()
        # With prompts to prefill, one step; else run ahead until the loop has work.
        ahead = not self.scheduler.prefilling
        try:
            await anyio.to_thread.run_sync(self._decode_steps, batch, ahead, limiter=self._limiter)
        except Exception as exc:
            logger.exception("decode step failed for %d requests", len(batch))
            for generation in batch:
                generation.fail(wrap_error(exc))
            self.failed_decodes += 1
            self.last_failure = time.monotonic()
        return True

    def _decode_steps(self, batch: Sequence[Generation], ahead: bool) -> None:
        """Run decode steps for `batch` (in the worker): one, or while `ahead` as many as
        come before the loop needs a boundary.

        Each step's tokens are announced to the emitter just as the next step's run
        starts (see `_notify`), or on return.
        """
        slots: list[int] = [g.slot for g in batch]  # type: ignore[misc]
        announce = self._announce
        speculator = self.speculator
        try:
            while True:
                started = time.perf_counter()
                drafts = speculator.drafts(batch) if speculator is not None else None
                runs: Sequence[Sequence[int]]
                if drafts is not None:
                    assert speculator is not None
                    runs = speculator.step(batch, drafts, sample_row, announce)
                else:
                    logits = self.runner.decode(slots, [g.last_token for g in batch], announce)
                    runs = [(sample_row(g, row),) for g, row in zip(batch, logits, strict=True)]
                    for generation, (token,) in zip(batch, runs, strict=True):
                        generation.schedule(token)
                if speculator is not None:
                    speculator.observe(batch, runs, time.perf_counter() - started)
                self.steps += 1
                self.decode_step_seconds = update_estimate(
                    self.decode_step_seconds, time.perf_counter() - started
                )
                self.failed_decodes = 0
                self.last_batch = len(batch)
                self._published.append((batch, runs))
                if (
                    not ahead
                    or self._attention.is_set()
                    or self._stopping
                    or len(self._published) >= EMITTER_LAG
                    or not all(g.decoding for g in batch)
                ):
                    return
        finally:
            announce()

    def _announce(self) -> None:
        """Hand whatever was published to the notifier thread (from the worker)."""
        if self._published:
            self._notices.put(True)

    def _notify_emitter(self) -> None:
        self._published_event.set()

    async def _emit(self) -> None:
        """Turn sampled tokens into events, in step order, while the next step runs."""
        while True:
            while self._published:
                batch, runs = self._published.popleft()
                ended = False
                for generation, run in zip(batch, runs, strict=True):
                    if generation.active:
                        accept_run(generation, run)
                        ended = ended or not generation.active
                if ended:
                    self.wake()  # a finished sequence frees its slot at the next boundary
            self._caught_up.set()
            self._published_event = anyio.Event()
            if not self._published:
                await self._published_event.wait()
