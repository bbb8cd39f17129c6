"""Middlewares: their throughput cost, disconnect-to-free latency and resume latency.

On the prepared SmolLM2 int8, in one run:

1. **Overhead** — two `tokenwire serve --backend onnx` processes side by side, one with
   `--middleware metrics --middleware cancellation --middleware prompt_cache`, one with none;
   single-stream and 8-stream aggregate tokens/s over SSE (greedy), in interleaved rounds
   whose order alternates. Every request has a distinct prompt, so the prompt cache can reuse
   at most the chat template's fixed head (the cached tokens are reported).
2. **Disconnect** — an in-process `OnnxBackend` (uvicorn thread, `cancellation` on): the
   client closes the connection after a few deltas and polls `backend.stats` every ~1 ms
   until the sequence has left the batch; ms and decode steps from close to gone.
3. **Resume** — the same with `resume=ResumeConfig(grace_seconds=10)`: drop after a few
   deltas, reconnect at once with `GET /v1/streams/{id}` and `Last-Event-ID`, time to the
   first replayed event (the new connection included).

Run alone: `python -m benchmarks.middlewares [--quick] [--update-docs] [--model DIR]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks._shared import report
from benchmarks._shared.paths import REPO
from benchmarks._shared.prepared_model import find_model
from benchmarks._shared.serve import ServeProcess
from benchmarks.middlewares._probes import (
    ALL_MIDDLEWARES,
    DisconnectSample,
    ResumeSample,
    Throughput,
    disconnect_once,
    percentile,
    resume_once,
    running_server,
    throughput,
)
from tokenwire import ResumeConfig, create_app
from tokenwire.backends.onnx.backend import OnnxBackend

SECTION = "middlewares"
OVERHEAD_TARGET = 0.95
STEPS_TARGET = 1
CONFIGS = {"on": ALL_MIDDLEWARES, "off": ()}


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int = 6
    streams: int = 8
    max_tokens: int = 96
    samples: int = 20
    disconnect_after: int = 8
    resume_max_tokens: int = 48

    @classmethod
    def quick(cls) -> Settings:
        """A smoke run; its numbers are not worth comparing."""
        return cls(rounds=1, streams=2, max_tokens=16, samples=5, disconnect_after=3,
                   resume_max_tokens=16)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Overhead:
    scenario: str
    on_tokens_per_second: float
    off_tokens_per_second: float
    ratio: float
    paired_ratio: float
    """Median over rounds of that round's on ÷ off: load drifts between rounds on a shared
    machine, and a round's two measurements sit next to each other in time."""
    on_cached_tokens_per_request: float

    @property
    def met(self) -> bool:
        return self.paired_ratio >= OVERHEAD_TARGET


@dataclass(frozen=True, slots=True)
class Latency:
    name: str
    count: int
    p50_ms: float
    p99_ms: float
    p50_steps: float | None
    p99_steps: float | None


def run_overhead(model: Path, model_id: str, settings: Settings) -> list[Throughput]:
    servers = {name: ServeProcess.onnx(model, middlewares) for name, middlewares in CONFIGS.items()}
    samples: list[Throughput] = []
    try:
        for server in servers.values():
            server.wait_ready()
        seed = 0
        for name, server in servers.items():  # warm-up: first runs allocate and page in
            throughput(server.url, model_id, config=name, streams=settings.streams, round_=-1,
                       max_tokens=settings.max_tokens, seed=seed)  # fmt: skip
            seed += settings.streams
        for round_ in range(settings.rounds):
            order = list(servers.items()) if round_ % 2 == 0 else list(servers.items())[::-1]
            for name, server in order:
                for streams in (1, settings.streams):
                    samples.append(throughput(server.url, model_id, config=name,
                                              streams=streams, round_=round_,
                                              max_tokens=settings.max_tokens, seed=seed))  # fmt: skip
                    seed += streams
            print(f"middlewares: overhead round {round_ + 1}/{settings.rounds} done", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    return samples


def run_disconnect_and_resume(
    model: Path, settings: Settings
) -> tuple[list[DisconnectSample], list[ResumeSample]]:
    backend = OnnxBackend(model)
    app = create_app(backend, middlewares=["cancellation"], playground=False,
                     resume=ResumeConfig(grace_seconds=10))  # fmt: skip
    disconnects: list[DisconnectSample] = []
    resumes: list[ResumeSample] = []
    with running_server(app) as url:
        model_id = backend.model_id
        index = 0
        # With resume on a dropped stream lives on; disconnects are measured on a second app.
        while len(resumes) < settings.samples and index < settings.samples * 3:
            sample = resume_once(url, model_id, index, after=settings.disconnect_after,
                                 max_tokens=settings.resume_max_tokens)  # fmt: skip
            index += 1
            if sample is not None:
                resumes.append(sample)
    backend = OnnxBackend(model)
    app = create_app(backend, middlewares=["cancellation"], playground=False)
    with running_server(app) as url:
        model_id = backend.model_id
        index = 0
        while len(disconnects) < settings.samples and index < settings.samples * 3:
            dropped = disconnect_once(url, backend, model_id, index,
                                      after=settings.disconnect_after,
                                      max_tokens=settings.max_tokens)  # fmt: skip
            index += 1
            if dropped is not None:
                disconnects.append(dropped)
    return disconnects, resumes


def summarize_overhead(samples: Sequence[Throughput], settings: Settings) -> list[Overhead]:
    rows = []
    for streams in (1, settings.streams):
        rates = {
            config: statistics.median(
                s.tokens_per_second for s in samples if s.config == config and s.streams == streams
            )
            for config in CONFIGS
        }
        on = [s for s in samples if s.config == "on" and s.streams == streams]
        cached = sum(s.cached_tokens for s in on) / max(1, sum(s.streams for s in on))
        rate = {(s.config, s.round): s.tokens_per_second for s in samples if s.streams == streams}
        rounds = sorted({s.round for s in samples})
        paired = statistics.median(rate["on", r] / rate["off", r] for r in rounds)
        label = "single stream" if streams == 1 else f"{streams} streams, aggregate"
        rows.append(
            Overhead(label, rates["on"], rates["off"], rates["on"] / rates["off"], paired, cached)
        )
    return rows


def summarize_latency(
    disconnects: Sequence[DisconnectSample], resumes: Sequence[ResumeSample]
) -> list[Latency]:
    rows = []
    if disconnects:
        ms, steps = [d.ms for d in disconnects], [float(d.steps) for d in disconnects]
        rows.append(Latency("disconnect → slot freed", len(ms), percentile(ms, 50),
                            percentile(ms, 99), percentile(steps, 50), percentile(steps, 99)))  # fmt: skip
    if resumes:
        ms = [r.ms for r in resumes]
        rows.append(Latency("reconnect → first replayed event", len(ms), percentile(ms, 50),
                            percentile(ms, 99), None, None))  # fmt: skip
    return rows


def table(overheads: Sequence[Overhead], latencies: Sequence[Latency]) -> str:
    lines = [
        "| scenario | all middlewares on | none | on ÷ off (medians) | on ÷ off (paired, median) "
        "| target ≥ 0.95× (paired) | cached prompt tokens per request (on) |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for o in overheads:
        lines.append(
            f"| {o.scenario} | {o.on_tokens_per_second:,.1f} tok/s | "
            f"{o.off_tokens_per_second:,.1f} tok/s | {o.ratio:.3f}× | {o.paired_ratio:.3f}× | "
            f"{'met' if o.met else '**missed**'} | {o.on_cached_tokens_per_request:.0f} |"
        )
    lines += ["", "| measure | n | p50 | p99 | p50 decode steps | p99 decode steps |",
              "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for lat in latencies:
        steps = ("–", "–") if lat.p50_steps is None else (f"{lat.p50_steps:.0f}",
                                                          f"{lat.p99_steps:.0f}")  # fmt: skip
        lines.append(f"| {lat.name} | {lat.count} | {lat.p50_ms:.1f} ms | {lat.p99_ms:.1f} ms | "
                     f"{steps[0]} | {steps[1]} |")  # fmt: skip
    return "\n".join(lines)


def verdict(latencies: Sequence[Latency]) -> str:
    for lat in latencies:
        if lat.p99_steps is not None:
            met = "met" if lat.p99_steps <= STEPS_TARGET else "**missed**"
            return (f"Disconnect to slot freed: p99 {lat.p99_steps:.0f} decode steps "
                    f"(target ≤ {STEPS_TARGET} step: {met}).")  # fmt: skip
    return ""


_PROSE = """## Middlewares

What the `metrics`, `cancellation` and `prompt_cache` middlewares cost in tokens/s, how fast a
client disconnect frees a batch slot, and how fast a resumable stream replays after a
reconnect (issue 4). `python -m benchmarks.middlewares` runs it; the throughput part starts
two `tokenwire serve --backend onnx` processes (all three middlewares, and none) side by side
and alternates between them round by round; the disconnect and resume parts serve an
in-process `OnnxBackend` and read its scheduler's counters (`backend.stats`) every ~1 ms.
The machine is shared: the load average is recorded with each run.
"""


def main(
    *, quick: bool, results_dir: Path, docs: Path | None, command: str, model: Path | None = None
) -> tuple[list[Overhead], list[Latency]]:
    """Run all three parts, print the tables, write `middlewares.json` (and the docs)."""
    settings = Settings.quick() if quick else Settings()
    model = find_model(model)
    model_id = json.loads((model / "manifest.json").read_text())["model_id"]
    load_before = os.getloadavg()
    overhead_samples = run_overhead(model, model_id, settings)
    disconnects, resumes = run_disconnect_and_resume(model, settings)
    load_after = os.getloadavg()
    overheads = summarize_overhead(overhead_samples, settings)
    latencies = summarize_latency(disconnects, resumes)
    machine = report.Machine.current()
    text, summary = table(overheads, latencies), verdict(latencies)
    print(text, summary, sep="\n")
    path = report.write_json(
        results_dir / "middlewares.json",
        {"machine": asdict(machine), "settings": asdict(settings), "command": command,
         "model": model.name, "load_average": {"before": load_before, "after": load_after},
         "overhead": [asdict(o) for o in overheads],
         "latency": [asdict(lat) for lat in latencies],
         "throughput_samples": [asdict(s) for s in overhead_samples],
         "disconnect_samples": [asdict(d) for d in disconnects],
         "resume_samples": [asdict(r) for r in resumes]},
    )  # fmt: skip
    print(f"middlewares: results in {path}")
    if docs is not None:
        header = (
            f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores, Python "
            f"{machine.python}. Command: `{command}` — {model.name}, greedy, "
            f"{settings.max_tokens} new tokens at most per request, SSE; median of "
            f"{settings.rounds} interleaved rounds (tokens/s counts the usage chunk's "
            f"completion tokens over wall time). Disconnect: dropped after "
            f"{settings.disconnect_after} deltas; resume: dropped after "
            f"{settings.disconnect_after} deltas and reconnected at once "
            f"(`grace_seconds=10`). Load average (1/5/15 min) "
            f"{'/'.join(f'{v:.1f}' for v in load_before)} before, "
            f"{'/'.join(f'{v:.1f}' for v in load_after)} after."
        )
        if f"<!-- {SECTION}:start -->" not in (docs.read_text() if docs.exists() else ""):
            docs.write_text(docs.read_text().rstrip("\n") + "\n\n" + _PROSE)
        report.update_docs(docs, SECTION, f"{header}\n\n{text}\n\n{summary}")
    return overheads, latencies


def cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.middlewares", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--model", type=Path, help="a prepared model directory")
    args = parser.parse_args(argv)
    command = " ".join(["python", "-m", "benchmarks.middlewares", *sys.argv[1:]])
    docs = REPO / "docs" / "benchmarks.md" if args.update_docs else None
    main(quick=args.quick, results_dir=args.results_dir, docs=docs, command=command,
         model=args.model)  # fmt: skip
