"""Per-stage progress on stderr, with elapsed seconds, so a long build never looks hung."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO


@dataclass(frozen=True, slots=True)
class StageTiming:
    name: str
    seconds: float


@dataclass(slots=True)
class ProgressReporter:
    """Prints `[n] stage ...` when a stage starts and its duration when it ends."""

    stream: TextIO | None = None
    timings: list[StageTiming] = field(default_factory=list)
    _started: float = field(default_factory=time.perf_counter)

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def note(self, message: str) -> None:
        print(f"tokenwire prepare: {message}", file=self._out(), flush=True)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        number = len(self.timings) + 1
        self.note(f"[{number}] {name} ...")
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.note(f"[{number}] {name} failed after {time.perf_counter() - start:.1f} s")
            raise
        seconds = time.perf_counter() - start
        self.timings.append(StageTiming(name, seconds))
        self.note(f"[{number}] {name} done in {seconds:.1f} s ({self.elapsed():.1f} s so far)")

    def elapsed(self) -> float:
        return time.perf_counter() - self._started
