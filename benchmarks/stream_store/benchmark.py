"""Stream store: echo tokens/s through resumable SSE with the Redis store vs in memory, and
reconnect-to-first-replayed-event across replicas.

Throughput: one `tokenwire serve --backend echo --resume-grace 30` process per store (the
Redis one with `--stream-store`), 1 and 32 concurrent streams of `words` tokens each; runs
alternate memory/redis `rounds` times so machine load hits both alike; the median round
counts. The echo backend is the store's ceiling (no model time per token); the same pair
with the prepared SmolLM2 int8 (1 and 8 streams of `model_tokens` greedy tokens, counted from
usage) is what a user of the default backend sees. Reconnect: two replicas sharing Redis; a stream starts on A, the client drops after
a few events and reconnects on B with `Last-Event-ID`; the time is GET sent to the first
replayed event received.

Run alone: `python -m benchmarks.stream_store [--quick] [--update-docs]`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio
import httpx

from benchmarks._shared import report
from benchmarks._shared.paths import REPO
from benchmarks._shared.prepared_model import find_model
from benchmarks._shared.serve import ServeProcess
from benchmarks.stream_store._processes import RedisProcess, echo_serve

SECTION = "stream-store"
TARGET_RATIO = 0.9
"""Redis tokens/s over in-memory tokens/s (the issue's target)."""


@dataclass(frozen=True, slots=True)
class Settings:
    words: int = 2000
    concurrency: tuple[int, ...] = (1, 32)
    rounds: int = 9  # a 1-stream round lasts ~30 ms: medians of 3 swung 0.6-1.6x
    reconnects: int = 100
    model_tokens: int = 128
    model_concurrency: tuple[int, ...] = (1, 8)
    model_rounds: int = 3

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            words=200, concurrency=(1, 4), rounds=1, reconnects=10,
            model_tokens=16, model_concurrency=(2,), model_rounds=1,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Throughput:
    backend: str
    streams: int
    memory_tokens_per_second: float
    redis_tokens_per_second: float
    # Redis with `--no-failover` (no token record per flush); echo rows only.
    redis_no_failover_tokens_per_second: float | None = None

    @property
    def ratio(self) -> float:
        return self.redis_tokens_per_second / self.memory_tokens_per_second

    @property
    def no_failover_ratio(self) -> float | None:
        if self.redis_no_failover_tokens_per_second is None:
            return None
        return self.redis_no_failover_tokens_per_second / self.memory_tokens_per_second


@dataclass(frozen=True, slots=True)
class Reconnect:
    samples: int
    p50_ms: float
    p99_ms: float
    replayed_ids_contiguous: bool


def _body(words: int) -> dict[str, object]:
    prompt = " ".join(f"w{i}" for i in range(words))
    return {"model": "echo", "stream": True, "messages": [{"role": "user", "content": prompt}]}


async def _streams(url: str, streams: int, words: int) -> float:
    """Aggregate content events per second over `streams` concurrent streams."""
    counts: list[int] = []

    async def one(client: httpx.AsyncClient) -> None:
        count = 0
        async with client.stream("POST", f"{url}/v1/chat/completions", json=_body(words)) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    count += 1
        counts.append(count)

    limits = httpx.Limits(max_connections=streams + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(streams):
                tg.start_soon(one, client)
        elapsed = time.perf_counter() - started
    return sum(counts) / elapsed


async def _model_streams(url: str, streams: int, tokens: int) -> float:
    """Aggregate generated tokens per second (from usage) over `streams` concurrent greedy
    streams of the real model."""
    counted: list[int] = []

    async def one(client: httpx.AsyncClient, n: int, served: str) -> None:
        body = {
            "model": served, "stream": True, "max_tokens": tokens, "temperature": 0,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"Tell story number {n} about a lighthouse."}],
        }  # fmt: skip
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {") and '"usage":{' in line:
                    counted.append(json.loads(line[6:])["usage"]["completion_tokens"])

    async with httpx.AsyncClient(timeout=300) as client:
        served = (await client.get(f"{url}/v1/models")).json()["data"][0]["id"]
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(streams):
                tg.start_soon(one, client, n, served)
        elapsed = time.perf_counter() - started
    if len(counted) != streams:
        raise RuntimeError(f"{streams - len(counted)} model streams sent no usage")
    return sum(counted) / elapsed


Rate = Callable[[str, int, int], Awaitable[float]]
"""Aggregate tokens/s of `streams` concurrent streams of `size` tokens on the server at a URL."""


def _alternate(
    servers: dict[str, ServeProcess],
    backend: str,
    concurrency: tuple[int, ...],
    rounds: int,
    rate: Rate,
    size: int,
) -> list[Throughput]:
    """Medians of `rounds` alternating runs on each server (`memory`, `redis` and maybe
    `redis-no-failover`) per concurrency, after one small warm-up run each; stops them."""
    try:
        results = []
        for streams in concurrency:
            rates: dict[str, list[float]] = {name: [] for name in servers}
            for server in servers.values():
                anyio.run(rate, server.url, streams, 8)
            for _ in range(rounds):
                for name, server in servers.items():
                    rates[name].append(anyio.run(rate, server.url, streams, size))
            medians = {name: statistics.median(values) for name, values in rates.items()}
            results.append(
                Throughput(
                    backend,
                    streams,
                    medians["memory"],
                    medians["redis"],
                    medians.get("redis-no-failover"),
                )
            )
        return results
    finally:
        for server in servers.values():
            server.stop()


def measure_throughput(redis_url: str, settings: Settings) -> list[Throughput]:
    servers = {
        "memory": echo_serve(None),
        "redis": echo_serve(redis_url),
        "redis-no-failover": echo_serve(redis_url, ["--no-failover"]),
    }
    return _alternate(
        servers, "echo", settings.concurrency, settings.rounds, _streams, settings.words
    )


def measure_model_throughput(redis_url: str, model: Path, settings: Settings) -> list[Throughput]:
    """The same pair of stores in front of the real model: one server per store, alternating."""
    extra = ["--model", str(model)]
    servers = {
        "memory": echo_serve(None, extra, backend="onnx"),
        "redis": echo_serve(redis_url, extra, backend="onnx"),
    }
    return _alternate(
        servers,
        f"onnx ({model.name})",
        settings.model_concurrency,
        settings.model_rounds,
        _model_streams,
        settings.model_tokens,
    )


def measure_reconnect(redis_url: str, settings: Settings) -> Reconnect:
    a = echo_serve(redis_url, ["--backend-option", "delay=0.002"])
    b = echo_serve(redis_url)
    times: list[float] = []
    contiguous = True
    try:
        with httpx.Client(timeout=30) as client:
            for n in range(settings.reconnects):
                request_id = f"bench-{n}-{time.monotonic_ns()}"
                last = ""
                with client.stream(
                    "POST", f"{a.url}/v1/chat/completions", json=_body(200),
                    headers={"x-request-id": request_id},
                ) as response:  # fmt: skip
                    seen = 0
                    for line in response.iter_lines():
                        if line.startswith("id: "):
                            last, seen = line[4:], seen + 1
                            if seen >= 5:
                                break
                started = time.perf_counter()
                with client.stream(
                    "GET", f"{b.url}/v1/streams/{request_id}", headers={"last-event-id": last}
                ) as response:
                    for line in response.iter_lines():
                        if line.startswith("id: "):
                            times.append((time.perf_counter() - started) * 1000)
                            expected = f"{request_id}:{int(last.rsplit(':', 1)[1]) + 1}"
                            contiguous = contiguous and line[4:] == expected
                            break
    finally:
        a.stop()
        b.stop()
    times.sort()
    p99 = times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)]  # nearest rank
    return Reconnect(len(times), statistics.median(times), p99, contiguous)


def table(throughput: list[Throughput], reconnect: Reconnect) -> str:
    lines = [
        "| backend | streams | in-memory tokens/s | Redis tokens/s | Redis / memory | "
        "Redis `--no-failover` / memory |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in throughput:
        bare = "—" if t.no_failover_ratio is None else f"{t.no_failover_ratio:.2f}×"
        lines.append(
            f"| {t.backend} | {t.streams} | {t.memory_tokens_per_second:,.0f} | "
            f"{t.redis_tokens_per_second:,.0f} | {t.ratio:.2f}× | {bare} |"
        )
    lines += [
        "",
        "| reconnect on another replica | samples | p50 | p99 |",
        "|---|---:|---:|---:|",
        f"| GET sent → first replayed event | {reconnect.samples} | "
        f"{reconnect.p50_ms:.1f} ms | {reconnect.p99_ms:.1f} ms |",
    ]
    return "\n".join(lines)


def main(
    *, quick: bool, results_dir: Path, docs: Path | None, command: str, model: Path | None = None
) -> tuple[list[Throughput], Reconnect]:
    """Run the benchmark, print its table, write `stream_store.json` (and the docs section).

    `model`: the prepared model for the real-model rows (default: the usual homes)."""
    settings = Settings.quick() if quick else Settings()
    model_dir = find_model(model)
    load_before = os.getloadavg()
    redis = RedisProcess()
    try:
        throughput = measure_throughput(redis.url, settings)
        throughput += measure_model_throughput(redis.url, model_dir, settings)
        reconnect = measure_reconnect(redis.url, settings)
    finally:
        redis.stop()
    load_after = os.getloadavg()
    machine = report.Machine.current()
    text = table(throughput, reconnect)
    worst = min(t.ratio for t in throughput if t.backend == "echo")
    bare = min(t.no_failover_ratio or 0.0 for t in throughput if t.backend == "echo")
    verdict = (
        f"Redis over in-memory on echo: {worst:.2f}× at worst with failover recording, "
        f"{bare:.2f}× without (target ≥ {TARGET_RATIO}×): "
        + (
            "met."
            if worst >= TARGET_RATIO
            else "met without failover recording."
            if bare >= TARGET_RATIO
            else "not met."
        )
    )
    print(text, verdict, sep="\n")
    path = report.write_json(
        results_dir / "stream_store.json",
        {"machine": asdict(machine), "settings": asdict(settings), "command": command,
         "load_average": {"before": load_before, "after": load_after},
         "throughput": [
             asdict(t) | {"ratio": t.ratio, "no_failover_ratio": t.no_failover_ratio}
             for t in throughput
         ],
         "reconnect": asdict(reconnect)},
    )  # fmt: skip
    print(f"stream-store: results in {path}")
    if docs is not None:
        header = (
            f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores (shared with "
            f"other work), Python {machine.python}. Command: `{command}` — echo backend "
            f"with {settings.words} tokens per stream, then the real model with "
            f"{settings.model_tokens} greedy tokens per stream; `--resume-grace 30`; client, "
            "servers and "
            f"redis-server 7.0 on the same machine; median of {settings.rounds} alternating "
            f"rounds. Load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in load_before)} "
            f"before, {'/'.join(f'{x:.1f}' for x in load_after)} after."
        )
        report.update_docs(docs, SECTION, f"{header}\n\n{text}\n\n{verdict}")
    # Failover (kill the owner, time to the first new token): its own module and section.
    from benchmarks.stream_store import failover

    failover.main(quick=quick, results_dir=results_dir, docs=docs, command=command)
    return throughput, reconnect


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream_store", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--model", type=Path, help="prepared model directory (real-model rows)")
    args = parser.parse_args(argv)
    main(
        model=args.model,
        quick=args.quick,
        results_dir=args.results_dir,
        docs=REPO / "docs" / "benchmarks.md" if args.update_docs else None,
        command="python -m benchmarks.stream_store" + (" --quick" if args.quick else ""),
    )
    sys.exit(0)
