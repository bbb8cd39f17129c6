"""The ONNX backend end to end: `tokenwire serve` against the runtimes a CPU user would run.

SmolLM2-135M-Instruct, 128 new tokens, greedy, streamed over SSE to a real HTTP client.
Every system runs in its own process and all are up at once; rounds are interleaved (each
round visits every system, in a rotated order), so machine noise hits all alike, and
medians are reported. Phases: single stream (tokenwire at each precision, the bare ORT
loop, onnxruntime-genai's Generator, optimum, llama-cpp-python's server), concurrent
streams, ORT spin-waiting on and off, TTFT alone and under load, inter-token gaps while
long prompts arrive (for several `prefill_budget_ms` values), the memory-bandwidth bound,
and memory.

Models come from `$TOKENWIRE_HOME/models` (prepared when missing); `TOKENWIRE_BENCH_MODEL`
names one model directory to run alone (the tests use a tiny fixture model). Baselines that
are not set up (`python -m benchmarks.onnx_backend._baselines setup`) are skipped and named.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio

from benchmarks._shared import report
from benchmarks._shared.bandwidth import read_bandwidth, weight_bytes
from benchmarks._shared.paths import REPO
from benchmarks._shared.proc_stats import cpu_seconds, rss_bytes
from benchmarks.onnx_backend import _baselines, _report
from benchmarks.onnx_backend._models import Prompt, long_prompt, model_dirs, render
from benchmarks.onnx_backend._processes import (
    HttpServer,
    RssSampler,
    Worker,
    free_port,
    managed,
    tokenwire_command,
)
from benchmarks.onnx_backend._results import (
    BandwidthBound,
    ConcurrencySummary,
    Environment,
    GapSummary,
    OnnxResults,
    PrecisionSummary,
    SingleSample,
    SpinSummary,
    TtftSummary,
    summarize_single,
)
from benchmarks.onnx_backend._scenarios import (
    DECODE_PROMPT,
    SHORT_PROMPT,
    System,
    bare_batch,
    concurrent,
    gaps_under_arrivals,
    percentile,
    ttfts,
    ttfts_under_load,
)
from benchmarks.onnx_backend._settings import Settings

SECTION = "onnx-backend"
LOGS = REPO / "benchmarks" / "results" / "logs"


@dataclass(slots=True)
class Fleet:
    """Every process under test, and the systems the single-stream phase visits."""

    stack: contextlib.ExitStack
    systems: list[System] = field(default_factory=list)
    servers: dict[str, HttpServer] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def pids(self) -> dict[str, int]:
        found = {name: s.pid for name, s in self.servers.items()}
        found.update({name: w.pid for name, w in self.workers.items()})
        return found


def start_tokenwire(stack: contextlib.ExitStack, name: str, model: Path, settings: Settings,
                    **overrides: object) -> HttpServer:  # fmt: skip
    """`tokenwire serve` with the settings' backend options, `overrides` winning."""
    port = free_port()
    options = {
        "max_batch": settings.max_batch,
        "intra_op_threads": settings.threads,
        "prefill_chunk": settings.prefill_chunk,
        "prefill_budget_ms": settings.prefill_budget_ms,
        **overrides,
    }
    LOGS.mkdir(parents=True, exist_ok=True)
    command = tokenwire_command(model, port, options)
    return managed(stack, HttpServer(name, command, port, log=LOGS / f"{name}.log"))


def start_fleet(stack: contextlib.ExitStack, settings: Settings, models: dict[str, Path],
                prompts: list[Prompt]) -> Fleet:  # fmt: skip
    fleet = Fleet(stack)
    rendered = {p.user: p.rendered for p in prompts}
    threads = str(settings.threads)
    for precision, model in models.items():
        server = start_tokenwire(stack, f"tokenwire-{precision}", model, settings)
        fleet.servers[server.name] = server
        fleet.systems.append(System(server.name, f"tokenwire {precision}", precision, server.port,
                                    server.model_id, pid=server.pid))  # fmt: skip
        worker = managed(stack,
            Worker(f"bare-{precision}", [sys.executable, "-m", "benchmarks.onnx_backend._bare_loop",
                   "--model", str(model), "--threads", threads], log=LOGS / f"bare-{precision}.log")
        )  # fmt: skip
        fleet.workers[worker.name] = worker
        fleet.systems.append(
            System(worker.name, f"bare ORT loop {precision}", precision, worker=worker,
                   rendered=rendered, pid=worker.pid)
        )  # fmt: skip
    if settings.spin_experiment and "int8" in models:
        server = start_tokenwire(stack, "tokenwire-int8-nospin", models["int8"], settings,
                                 allow_spinning=False)  # fmt: skip
        fleet.servers[server.name] = server
        fleet.systems.append(System(server.name, "tokenwire int8, allow_spinning=false",
                                    "int8", server.port, server.model_id, pid=server.pid))  # fmt: skip
    if not settings.baselines or os.environ.get("TOKENWIRE_BENCH_MODEL"):
        return fleet
    int8 = models.get("int8")
    genai = _baselines.genai_available()
    if int8 is not None and genai.ready and (int8 / "genai_config.json").is_file():
        worker = managed(stack,
            Worker("genai-int8", [sys.executable, "-m", "benchmarks.onnx_backend._genai_worker", "--model",
                   str(int8), "--threads", threads], log=LOGS / "genai.log")
        )  # fmt: skip
        fleet.workers[worker.name] = worker
        fleet.systems.append(
            System(worker.name, "onnxruntime-genai Generator int8", "int8", worker=worker,
                   rendered=rendered, pid=worker.pid)
        )  # fmt: skip
    else:
        fleet.skipped["genai-int8"] = genai.reason or "no genai_config.json beside the model"
    optimum_python = str(_baselines.env_python(_baselines.OPTIMUM_ENV))
    for name, label, precision, directory in (
        ("optimum-fp32", "optimum generate fp32", "fp32", _baselines.OPTIMUM_MODEL),
        ("optimum-int8", "optimum generate int8 (MatMulNBits)", "int8",
         _baselines.OPTIMUM_INT8_MODEL),
    ):  # fmt: skip
        availability = _baselines.optimum_available(directory)
        if not availability.ready:
            fleet.skipped[name] = availability.reason
            continue
        worker = managed(stack,
            Worker(name, [optimum_python, "-m", "benchmarks.onnx_backend._optimum_worker", "--model",
                   str(directory), "--threads", threads], log=LOGS / f"{name}.log")
        )  # fmt: skip
        fleet.workers[name] = worker
        fleet.systems.append(System(name, label, precision, worker=worker, rendered=rendered, pid=worker.pid))
    llamacpp = _baselines.llamacpp_available()
    if llamacpp.ready:
        port = free_port()
        server = managed(stack,
            HttpServer("llamacpp-q4_1", _baselines.llamacpp_command(port, settings.threads),
                       port, log=LOGS / "llamacpp.log")
        )  # fmt: skip
        fleet.servers[server.name] = server
        fleet.systems.append(System(server.name, "llama-cpp-python server Q4_1", "q4_1", port,
                                    server.model_id, pid=server.pid))  # fmt: skip
    else:
        fleet.skipped["llamacpp-q4_1"] = llamacpp.reason
    return fleet


async def run_benchmark(settings: Settings, command: str) -> OnnxResults:
    load_before = os.getloadavg()
    bandwidth = [read_bandwidth(settings.threads)]
    models = model_dirs(settings.precisions)
    main_precision = "int8" if "int8" in models else next(iter(models))
    main_model = models[main_precision]
    count = render(main_model, DECODE_PROMPT)
    short = render(main_model, SHORT_PROMPT)
    context = json.loads((main_model / "manifest.json").read_text())["kv"]["max_context"]
    long = long_prompt(main_model, min(settings.long_prompt_tokens, context // 2))
    with contextlib.ExitStack() as stack:
        print("starting servers and workers ...", flush=True)
        fleet = start_fleet(stack, settings, models, [count, short, long])
        main = fleet.servers[f"tokenwire-{main_precision}"]
        sampler = RssSampler(main.pid)
        stack.callback(sampler.stop)
        for system in fleet.systems:  # warm-up: first runs pay for allocations
            await system.run(DECODE_PROMPT, min(16, settings.new_tokens))

        print("single stream ...", flush=True)
        samples: list[SingleSample] = []
        for r in range(settings.rounds):
            order = fleet.systems[r % len(fleet.systems):] + fleet.systems[: r % len(fleet.systems)]
            for system in order:
                run = await system.run(DECODE_PROMPT, settings.new_tokens)
                samples.append(SingleSample.of(system, r, run))
            rates = ", ".join(f"{s.system} {s.decode_tokens_per_second:.0f}"
                              for s in samples if s.round == r)  # fmt: skip
            print(f"  round {r + 1}/{settings.rounds}: {rates} tok/s", flush=True)

        print("concurrent streams ...", flush=True)
        scaling = await _scaling(settings, main, fleet.workers[f"bare-{main_precision}"],
                                 count.rendered, sampler)  # fmt: skip

        spin: list[SpinSummary] = []
        if "tokenwire-int8-nospin" in fleet.servers:
            print("allow_spinning on/off ...", flush=True)
            spin = await _spin(settings, main, fleet.servers["tokenwire-int8-nospin"])

        print("time to first token ...", flush=True)
        ttft = await _ttft(settings, main, short, long)

        print("inter-token gaps while long prompts arrive ...", flush=True)
        gaps = []
        for budget in settings.budget_sweep:
            with contextlib.ExitStack() as local:
                server = main
                if budget != settings.prefill_budget_ms:
                    server = start_tokenwire(local, f"tokenwire-budget{budget:g}ms", main_model,
                                             settings, prefill_budget_ms=budget)  # fmt: skip
                gap_run = await gaps_under_arrivals(
                    server.port, server.model_id, long.user, settings.gap_running, settings.gap_quiet,
                    settings.gap_busy, settings.background_tokens,
                )  # fmt: skip
                gaps.append(GapSummary.of(budget, settings.gap_running, gap_run))
        peaks = {name: rss_bytes(pid, "VmHWM") for name, pid in fleet.pids().items()}
        skipped = dict(fleet.skipped)
        systems = [(s.name, s.label, s.precision) for s in fleet.systems]
    bandwidth.append(read_bandwidth(settings.threads))
    singles = summarize_single(samples, systems, peaks)
    precision_rows = []
    for precision, directory in models.items():
        manifest = json.loads((directory / "manifest.json").read_text())
        weights = weight_bytes(directory / manifest["model_file"])
        precision_rows.append(PrecisionSummary.of(precision, manifest.get("quality"), weights,
                                                  singles))  # fmt: skip
    environment = Environment(
        intra_op_threads=settings.threads,
        max_batch=settings.max_batch,
        prefill_chunk=settings.prefill_chunk,
        prefill_budget_ms=settings.prefill_budget_ms,
        load_before=load_before,
        load_after=os.getloadavg(),
        skipped=skipped,
        prompt_tokens={"decode": count.tokens, "short": short.tokens, "long": long.tokens},
    )
    return OnnxResults(
        settings=settings,
        machine=report.Machine.current(),
        command=command,
        environment=environment,
        samples=samples,
        single=singles,
        scaling=scaling,
        ttft=ttft,
        gaps=gaps,
        bandwidth=BandwidthBound.of(max(bandwidth), bandwidth, precision_rows, singles),
        precisions=precision_rows,
        peak_rss=peaks,
        spin=spin,
    )


async def _scaling(settings: Settings, main: HttpServer, bare: Worker, rendered: str,
                   sampler: RssSampler) -> list[ConcurrencySummary]:  # fmt: skip
    runs: dict[int, list[tuple[float, float, float, int]]] = {n: [] for n in settings.streams}
    levels = list(settings.streams)
    for r in range(settings.scaling_rounds):
        for n in levels[r % len(levels):] + levels[: r % len(levels)]:
            sampler.reset()
            served = await concurrent(main.port, main.model_id, n, settings.new_tokens)
            peak = sampler.peak()
            ceiling = await anyio.to_thread.run_sync(bare_batch, bare, rendered, n,
                                                     settings.new_tokens)  # fmt: skip
            runs[n].append((served.aggregate_tokens_per_second, served.per_stream_decode,
                            ceiling.aggregate_tokens_per_second, peak))  # fmt: skip
    return [ConcurrencySummary.of(n, runs[n]) for n in settings.streams]


async def _spin(settings: Settings, spinning: HttpServer, quiet: HttpServer
                ) -> list[SpinSummary]:  # fmt: skip
    """The same model served with `allow_spinning` on and off, interleaved, at 1 and 8 streams."""
    runs: dict[tuple[int, bool], list[tuple[float, float]]] = {}
    for r in range(settings.scaling_rounds):
        for streams in (1, settings.load_streams):
            pair = [(spinning, True), (quiet, False)]
            for server, spins in pair if r % 2 == 0 else pair[::-1]:
                cpu = cpu_seconds(server.pid)
                run = await concurrent(server.port, server.model_id, streams, settings.new_tokens)
                used = (cpu_seconds(server.pid) - cpu) * 1e3 / run.tokens
                runs.setdefault((streams, spins), []).append((run.aggregate_tokens_per_second, used))
    return [
        SpinSummary.of(streams, runs[(streams, True)], runs[(streams, False)])
        for streams in (1, settings.load_streams)
    ]


async def _ttft(settings: Settings, main: HttpServer, short: Prompt, long: Prompt
                ) -> list[TtftSummary]:  # fmt: skip
    port, model = main.port, main.model_id
    alone: dict[str, list[float]] = {short.user: [], long.user: []}
    for _ in range(settings.ttft_samples):
        for prompt in (short, long):
            alone[prompt.user].extend(await ttfts(port, model, prompt.user, 1))
    loaded = await ttfts_under_load(port, model, [short.user, long.user], settings.ttft_samples,
                                    settings.load_streams, settings.background_tokens)  # fmt: skip
    rows = []
    for name, prompt in (("short", short), ("long", long)):
        for load, values in ((0, alone[prompt.user]), (settings.load_streams, loaded[prompt.user])):
            rows.append(TtftSummary(name, prompt.tokens, load, len(values),
                                    percentile(values, 50) * 1e3, percentile(values, 99) * 1e3))  # fmt: skip
    return rows


def main(*, quick: bool, results_dir: Path, docs: Path | None, command: str) -> OnnxResults:
    settings = Settings.quick() if quick else Settings()
    started = time.perf_counter()
    results = anyio.run(run_benchmark, settings, command)
    results = replace(results, wall_seconds=time.perf_counter() - started)
    print(_report.table(results))
    path = report.write_json(results_dir / "onnx_backend.json", results.to_json())
    print(f"results: {path}")
    if docs is not None:
        images = _report.plots(results, docs.parent / "img")
        report.update_docs(docs, SECTION, _report.markdown(results, images, docs.parent))
        print(f"docs: {docs} (plots: {', '.join(str(i) for i in images)})")
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_backend", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    main(
        quick=args.quick,
        results_dir=args.results_dir,
        docs=REPO / "docs" / "benchmarks.md" if args.update_docs else None,
        command="python -m benchmarks.onnx_backend" + (" --quick" if args.quick else ""),
    )
