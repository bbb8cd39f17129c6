"""The ONNX benchmark's workloads, each run against systems that are already up.

A *system* generates for a chat prompt and reports when each token arrived: an HTTP server
(tokenwire, llama-cpp-python) read by the timed SSE client, or an in-process worker (the
bare ORT loop, onnxruntime-genai, optimum) whose own clock stamps each token.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from benchmarks._shared.proc_stats import cpu_seconds
from benchmarks.onnx_backend._processes import Worker
from benchmarks.onnx_backend._timed import TimedStream, chat_body, stream_chat

DECODE_PROMPT = "Write a detailed essay about the history of the Roman Empire."
"""Every model here (builder int8, int4, fp32, optimum, llama.cpp Q4_1) writes past 160 tokens
without an EOS, so every request runs its full length."""
SHORT_PROMPT = "Name the capital city of France."


@dataclass(frozen=True, slots=True)
class Run:
    """One generation, times in seconds from the request."""

    ttft: float
    decode_tokens_per_second: float
    tokens: int
    seconds: float
    text: str
    cpu_seconds: float = 0.0
    """CPU time the system's process used for this run (every thread)."""


@dataclass(slots=True)
class System:
    """Something that streams a greedy chat completion; `port` xor `worker`."""

    name: str
    label: str
    precision: str
    port: int | None = None
    model: str = "default"
    worker: Worker | None = None
    rendered: dict[str, str] = field(default_factory=dict)
    """User prompt → the chat-template rendering a worker tokenizes."""
    pid: int = 0
    """The process doing the work (the server, or the worker), for its CPU time."""

    async def run(self, prompt: str, max_tokens: int) -> Run:
        cpu = cpu_seconds(self.pid) if self.pid else 0.0
        if self.port is not None:
            stream = await stream_chat(self.port, chat_body(prompt, max_tokens, model=self.model))
            used = cpu_seconds(self.pid) - cpu if self.pid else 0.0
            return Run(stream.ttft, stream.decode_tokens_per_second, stream.completion_tokens,
                       stream.arrivals[-1], stream.text, used)  # fmt: skip
        assert self.worker is not None
        worker, text = self.worker, self.rendered[prompt]
        answer = await anyio.to_thread.run_sync(worker.generate, text, max_tokens)
        used = cpu_seconds(self.pid) - cpu if self.pid else 0.0
        arrivals = answer.arrivals
        span = arrivals[-1] - arrivals[0]
        rate = (len(arrivals) - 1) / span if span > 0 else 0.0
        return Run(arrivals[0], rate, len(arrivals), arrivals[-1], answer.text, used)


@dataclass(frozen=True, slots=True)
class ConcurrentRun:
    streams: int
    tokens: int
    seconds: float
    per_stream_decode: float
    """Median over the streams of each one's own decode tokens/s."""

    @property
    def aggregate_tokens_per_second(self) -> float:
        return self.tokens / self.seconds


async def concurrent(port: int, model: str, streams: int, max_tokens: int) -> ConcurrentRun:
    """`streams` identical requests at once; tokens over the time until the last one ends."""
    results: list[TimedStream] = []
    body = chat_body(DECODE_PROMPT, max_tokens, model=model)

    async def one() -> None:
        results.append(await stream_chat(port, body))

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(streams):
            tg.start_soon(one)
    seconds = time.perf_counter() - started
    return ConcurrentRun(
        streams,
        sum(r.completion_tokens for r in results),
        seconds,
        statistics.median(r.decode_tokens_per_second for r in results),
    )


def bare_batch(worker: Worker, rendered: str, batch: int, max_tokens: int) -> ConcurrentRun:
    """The bare loop decoding `batch` copies at once: the ceiling for `concurrent`."""
    answer = worker.generate(rendered, max_tokens, batch)
    arrivals = answer.arrivals
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    return ConcurrentRun(batch, batch * len(arrivals), arrivals[-1], rate)


class Background:
    """`count` streams that keep generating (restarted when they end) until cancelled.

    Each stream run's token arrival clocks are kept, so gaps can be read afterwards.
    """

    def __init__(self, port: int, model: str, count: int, max_tokens: int) -> None:
        self.port = port
        self.count = count
        self.body = chat_body(DECODE_PROMPT, max_tokens, model=model)
        self.runs: list[list[float]] = []
        self._first_tokens = 0
        self._all_running = anyio.Event()

    async def _stream(self) -> None:
        first = True
        while True:
            clocks: list[float] = []
            self.runs.append(clocks)

            def stamp(clock: float, clocks: list[float] = clocks) -> None:
                clocks.append(clock)
                nonlocal first
                if first:
                    first = False
                    self._first_tokens += 1
                    if self._first_tokens == self.count:
                        self._all_running.set()

            await stream_chat(self.port, self.body, on_token=stamp)

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        for _ in range(self.count):
            tg.start_soon(self._stream)

    async def wait_running(self) -> None:
        """Until every stream has received a token."""
        with anyio.fail_after(120):
            await self._all_running.wait()

    def gaps(self, start: float, end: float) -> list[float]:
        """Inter-token gaps whose later token arrived in [start, end]."""
        found = []
        for clocks in self.runs:
            for a, b in itertools.pairwise(clocks):
                if start <= b <= end:
                    found.append(b - a)
        return found


async def ttfts(
    port: int, model: str, prompt: str, samples: int, *, pause: float = 0.05
) -> list[float]:
    """`samples` sequential one-token requests; each one's time to its first token."""
    found = []
    body = chat_body(prompt, 1, model=model)
    for _ in range(samples):
        found.append((await stream_chat(port, body)).ttft)
        await anyio.sleep(pause)
    return found


async def ttfts_under_load(
    port: int, model: str, prompts: Sequence[str], samples: int, load: int, max_tokens: int
) -> dict[str, list[float]]:
    """TTFT of each prompt, interleaved, while `load` streams keep decoding."""
    found: dict[str, list[float]] = {p: [] for p in prompts}
    background = Background(port, model, load, max_tokens)
    async with anyio.create_task_group() as tg:
        background.start(tg)
        await background.wait_running()
        for _ in range(samples):
            for prompt in prompts:
                found[prompt].extend(await ttfts(port, model, prompt, 1, pause=0.1))
        tg.cancel_scope.cancel()
    return found


@dataclass(frozen=True, slots=True)
class GapRun:
    """Running streams' inter-token gaps, first quiet, then while long prompts arrive."""

    quiet_gaps: list[float]
    busy_gaps: list[float]
    long_ttfts: list[float]
    arrivals: list[float]
    """When each long prompt was sent, seconds from the busy window's start."""
    timeline: list[tuple[float, float]]
    """(time from the busy window's start, gap) of one running stream, for the plot."""


async def gaps_under_arrivals(
    port: int,
    model: str,
    long_prompt: str,
    running: int,
    quiet: float,
    busy: float,
    max_tokens: int,
) -> GapRun:
    """`running` streams decode; after `quiet` seconds, long prompts arrive back to back."""
    background = Background(port, model, running, max_tokens)
    long_ttfts: list[float] = []
    sent: list[float] = []
    body = chat_body(long_prompt, 1, model=model)
    async with anyio.create_task_group() as tg:
        background.start(tg)
        await background.wait_running()
        await anyio.sleep(0.2)  # past the streams' own admission
        quiet_start = time.perf_counter()
        await anyio.sleep(quiet)
        busy_start = time.perf_counter()
        while time.perf_counter() - busy_start < busy:
            sent.append(time.perf_counter() - busy_start)
            long_ttfts.append((await stream_chat(port, body)).ttft)
        busy_end = time.perf_counter()
        tg.cancel_scope.cancel()
    longest = max(background.runs, key=lambda r: sum(1 for c in r if c >= busy_start))
    timeline = [
        (b - busy_start, b - a)
        for a, b in itertools.pairwise(longest)
        if quiet_start <= b <= busy_end
    ]
    return GapRun(
        background.gaps(quiet_start, busy_start),
        background.gaps(busy_start, busy_end),
        long_ttfts,
        sent,
        timeline,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 20 samples is the largest)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
