"""Admission queue and slots: who waits, who prefills, who decodes (continuous batching).

Pure bookkeeping, touched only from the event loop: the decode loop asks it for work
between steps, and `generate()` adds and withdraws requests.
"""

from __future__ import annotations

import contextlib
import heapq
from collections import deque
from dataclasses import dataclass

from tokenwire.backends.onnx.generation import Generation, Phase
from tokenwire.errors import QueueFullError


@dataclass(frozen=True, slots=True)
class BackendStats:
    """A snapshot of the scheduler, for tests and metrics.

    `steps` counts decode steps and `prefill_chunks` prompt chunks run so far;
    `last_batch` is the number of sequences in the most recent decode step.
    """

    running: int
    prefilling: int
    waiting: int
    free_slots: int
    steps: int
    prefill_chunks: int
    last_batch: int


@dataclass(frozen=True, slots=True)
class PrefillChunk:
    generation: Generation
    start: int
    end: int

    @property
    def last(self) -> bool:
        return self.end == self.generation.prompt_tokens


class Scheduler:
    """Bounded waiting queue, `max_batch` slots (lowest free first, so decode rows stay dense)."""

    def __init__(self, *, max_batch: int, max_queue: int) -> None:
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.waiting: deque[Generation] = deque()
        self.prefilling: list[Generation] = []
        self.running: list[Generation] = []
        self._free = list(range(max_batch))

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def submit(self, generation: Generation) -> None:
        """Queue `generation`.

        Raises:
            QueueFullError: `max_queue` requests are already waiting.
        """
        if len(self.waiting) >= self.max_queue:
            raise QueueFullError(
                f"The server is busy: {len(self.waiting)} requests are waiting "
                f"(the limit is {self.max_queue}). Retry shortly."
            )
        self.waiting.append(generation)
        generation.note("queued")

    def withdraw(self, generation: Generation) -> None:
        """Drop a waiting request at once (its client left); others leave via `reap`."""
        generation.cancelled = True
        if generation.phase is Phase.WAITING:
            with contextlib.suppress(ValueError):
                self.waiting.remove(generation)
            generation.retire()

    def admit(self) -> list[Generation]:
        """Give free slots to waiting requests, in arrival order; returns those admitted
        (the caller notes their prefill, once it knows their cached prefix)."""
        admitted = []
        while self.waiting and self._free:
            generation = self.waiting.popleft()
            generation.slot = heapq.heappop(self._free)
            generation.phase = Phase.PREFILLING
            self.prefilling.append(generation)
            admitted.append(generation)
        return admitted

    def start_decoding(self, generation: Generation) -> None:
        self.prefilling.remove(generation)
        generation.phase = Phase.RUNNING
        self.running.append(generation)
        generation.note("decode")

    def reap(self) -> list[int]:
        """Remove finished and cancelled requests; returns the slots they freed."""
        freed: list[int] = []
        for group in (self.prefilling, self.running):
            if all(g.active for g in group):
                continue
            keep = []
            for generation in group:
                if generation.active:
                    keep.append(generation)
                else:
                    generation.retire()
                    if generation.slot is not None:
                        freed.append(generation.slot)
                        heapq.heappush(self._free, generation.slot)
                        generation.slot = None
            group[:] = keep
        return freed

    def prefill_plan(self, budget: int) -> list[PrefillChunk]:
        """Prompt chunks totalling at most `budget` tokens, oldest request first."""
        plan = []
        for generation in self.prefilling:
            if budget <= 0:
                break
            if not generation.active:
                continue
            start = generation.prefilled
            end = min(generation.prompt_tokens, start + budget)
            plan.append(PrefillChunk(generation, start, end))
            budget -= end - start
        return plan

    def drain(self) -> list[Generation]:
        """Every request still held, removed (for shutdown)."""
        held = [*self.waiting, *self.prefilling, *self.running]
        self.waiting.clear()
        self.prefilling.clear()
        self.running.clear()
        self._free = list(range(self.max_batch))
        return held
