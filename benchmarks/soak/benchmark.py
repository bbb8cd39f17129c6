"""The soak: thousands of streams with clients that vanish and stall; nothing may leak.

1,000 streams at 32 concurrent against the echo backend (5 ms per token), then 200 at 16
concurrent against the ONNX backend on SmolLM2 int8 and, when prepared, fp32 — 10% of
clients disconnect at random points (queued, prefill, decode), 5% read slowly. Each server
runs in its own process (`benchmarks.soak._server`), behind the metrics middleware.

Pass: no 5xx; every stream not dropped ends normally; fp32 greedy text equals the text run
alone (int8: how often it differs is reported); running/waiting gauges and buffered bytes
back to 0, every slot free, the event loop's task count back to its start; server RSS in
the last quarter within 10% of the first. Also measured: p99 inter-token latency of healthy
streams with and without 10 stalled readers, and how long readiness takes to turn 503
once the model's runs start failing. Results: benchmarks/results/soak.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from benchmarks._shared import report
from benchmarks._shared.paths import REPO
from benchmarks._shared.proc_stats import rss_bytes
from benchmarks.soak._client import (
    StreamPlan,
    Tally,
    chat_body,
    make_plans,
    metric_sum,
    p99,
    run_plans,
    stalled_readers,
)

DOCS_SECTION = "soak-results"
ECHO_PROMPTS = tuple(" ".join(f"p{p}w{i}" for i in range(200)) for p in range(8))
MODEL_PROMPTS = (
    "Name the capital city of France.",
    "What is the capital of Japan?",
    "Write a haiku about the sea.",
    "Explain what a CPU does in two sentences.",
    "List three primary colors.",
    "Tell me a short story about a robot who learns to paint.",
    "Count from 1 to 20, separated by commas.",
    "Why is the sky blue? Answer briefly.",
)
LONG_PROMPT = "Count from 1 to 1000, separated by commas."


@dataclass(frozen=True, slots=True)
class Settings:
    echo_streams: int = 1000
    echo_concurrency: int = 32
    echo_tokens: int = 200
    echo_delay: float = 0.005
    model_streams: int = 200
    model_concurrency: int = 16
    model_tokens: int = 96
    model_batch: int = 8
    stalled: int = 10
    healthy: int = 4
    healthy_tokens: int = 300

    @classmethod
    def quick(cls) -> Settings:
        return cls(echo_streams=150, echo_concurrency=16, model_streams=24, healthy_tokens=60)


@dataclass(slots=True)
class RunResult:
    """One soak run against one server."""

    name: str
    tally: dict[str, int]
    cancelled_by_phase: dict[str, float]
    rest: dict[str, Any]
    rss_first_quarter: float
    rss_last_quarter: float
    seconds: float
    differs_from_solo: int | None = None
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(self.checks.values())


class SoakServer:
    """`benchmarks.soak._server` in a child process; samples its RSS while it runs."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "benchmarks.soak._server", *args]
        self.process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            self.process.kill()
            raise RuntimeError(f"soak server {args} failed to start")
        self.url = f"http://127.0.0.1:{line.split()[1]}"
        self.samples: list[tuple[float, int]] = []
        self._sampling = threading.Event()

    def sample_rss(self) -> threading.Thread:
        self._sampling.clear()
        self.samples = []

        def run() -> None:
            while not self._sampling.wait(0.25):
                self.samples.append((time.monotonic(), rss_bytes(self.process.pid)))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def stop_sampling(self) -> tuple[float, float]:
        """Mean RSS of the first and the last quarter of the samples (by time)."""
        self._sampling.set()
        samples = self.samples
        start, end = samples[0][0], samples[-1][0]
        quarter = (end - start) / 4
        first = [r for t, r in samples if t <= start + quarter]
        last = [r for t, r in samples if t >= end - quarter]
        return sum(first) / len(first), sum(last) / len(last)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def rest_figures(url: str, tasks_before: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        with anyio.move_on_after(15):
            while True:
                stats = (await client.get("/debug/stats")).json()
                if stats["active_streams"] == 0 and stats["tasks"] <= tasks_before:
                    break
                await anyio.sleep(0.1)
        metrics = (await client.get("/metrics")).text
    return {
        **stats,
        "tasks_before": tasks_before,
        "gauge_running": metric_sum(metrics, "tokenwire_requests_running"),
        "gauge_waiting": metric_sum(metrics, "tokenwire_requests_waiting"),
        "gauge_buffered_bytes": metric_sum(metrics, "tokenwire_stream_buffered_bytes"),
        "_metrics": metrics,
    }


async def soak(
    server: SoakServer,
    name: str,
    plans: list[StreamPlan],
    *,
    concurrency: int,
    model: str,
    max_tokens: int,
    solo: dict[str, str] | None,
    exact: bool,
) -> RunResult:
    async with httpx.AsyncClient(base_url=server.url) as client:
        tasks_before = (await client.get("/debug/stats")).json()["tasks"]
        metrics_before = (await client.get("/metrics")).text
    sampler = server.sample_rss()
    started = time.perf_counter()
    outcomes = await run_plans(
        server.url, plans, concurrency=concurrency, model=model, max_tokens=max_tokens
    )
    seconds = time.perf_counter() - started
    first, last = server.stop_sampling()
    sampler.join()
    rest = await rest_figures(server.url, tasks_before)
    metrics = rest.pop("_metrics")
    tally = Tally.of(outcomes)
    differs = None
    if solo is not None:
        differs = sum(o.text != solo[o.plan.prompt] for o in outcomes if o.completed)
    result = RunResult(
        name,
        asdict(tally),
        {
            phase: metric_sum(metrics, "tokenwire_cancellations_total", phase=phase)
            - metric_sum(metrics_before, "tokenwire_cancellations_total", phase=phase)
            for phase in ("queued", "prefill", "decode")
        },
        rest,
        first,
        last,
        seconds,
        differs,
    )
    result.checks = {
        "no 5xx": tally.server_errors == 0,
        "every stream not dropped completed": tally.failed == 0,
        "gauges back to 0": rest["gauge_running"] == rest["gauge_waiting"] == 0,
        "no buffered bytes left": rest["buffered_bytes"] == rest["gauge_buffered_bytes"] == 0,
        "no stream or task left": rest["active_streams"] == 0 and rest["tasks"] <= tasks_before,
        "every slot free": rest.get("free_slots") == rest.get("max_batch"),
        "RSS last quarter within 10% of first": last <= first * 1.10,
    }
    if exact:
        result.checks["greedy text equals solo"] = differs == 0
    return result


async def solo_texts(url: str, model: str, max_tokens: int) -> dict[str, str]:
    texts = {}
    for prompt in MODEL_PROMPTS:
        [outcome] = await run_plans(
            url,
            [StreamPlan(0, prompt, "normal")],
            concurrency=1,
            model=model,
            max_tokens=max_tokens,
        )
        texts[prompt] = outcome.text
    return texts


async def stalled_latency(
    url: str,
    model: str,
    settings: Settings,
    *,
    healthy_body: dict[str, Any],
    stalled_body: dict[str, Any],
) -> dict[str, float]:
    """p99 and max inter-delta gap of healthy streams: alone, beside `stalled` readers that
    read nothing, and beside as many readers that read normally (the same batch load)."""
    plans = [
        StreamPlan(i, healthy_body["messages"][0]["content"], "normal")
        for i in range(settings.healthy)
    ]
    tokens = healthy_body["max_tokens"]

    async def healthy() -> list[float]:
        outcomes = await run_plans(
            url, plans, concurrency=len(plans), model=model, max_tokens=tokens
        )
        assert all(o.completed for o in outcomes), [o.error for o in outcomes]
        return [g for o in outcomes for g in o.gaps]

    figures: dict[str, float] = {}
    gaps = await healthy()
    figures.update(alone_p99=p99(gaps), alone_max=max(gaps))
    with stalled_readers(url, stalled_body, settings.stalled):
        await anyio.sleep(1.0)  # their buffers fill
        gaps = await healthy()
    figures.update(stalled_p99=p99(gaps), stalled_max=max(gaps))
    readers = [
        StreamPlan(i, stalled_body["messages"][0]["content"], "normal")
        for i in range(settings.stalled)
    ]
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: run_plans(
                url,
                readers,
                concurrency=len(readers),
                model=model,
                max_tokens=stalled_body["max_tokens"],
            )
        )
        await anyio.sleep(1.0)
        gaps = await healthy()
        tg.cancel_scope.cancel()
    figures.update(readers_p99=p99(gaps), readers_max=max(gaps))
    return figures


async def readiness_flip(url: str, model: str) -> float:
    """Seconds from the model's runs starting to fail to `/health/ready` answering 503."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        assert (await client.get("/health/ready")).status_code == 200
        flipped: float | None = None
        plans = [StreamPlan(i, "Name the capital city of France.", "normal") for i in range(4)]

        async def traffic() -> None:
            while flipped is None:
                await run_plans(url, plans, concurrency=4, model=model, max_tokens=16)

        async with anyio.create_task_group() as tg:
            tg.start_soon(traffic)
            await anyio.sleep(0.5)
            broken_at = time.perf_counter()
            await client.post("/debug/break")
            # Polling is the measurement: a probe sees nothing sooner.
            while (await client.get("/health/ready")).status_code != 503:  # noqa: ASYNC110
                await anyio.sleep(0.005)
            flipped = time.perf_counter() - broken_at
        await client.post("/debug/repair")
        await run_plans(url, plans[:1], concurrency=1, model=model, max_tokens=4)
        assert (await client.get("/health/ready")).status_code == 200
        assert flipped is not None
        return flipped


def model_dir(name: str) -> Path | None:
    from tokenwire.backends.onnx.manifest import models_dir

    path = models_dir() / name
    return path if (path / "manifest.json").is_file() else None


def say(text: str) -> None:
    print(f"soak: {text}", flush=True)


async def run_all(settings: Settings) -> dict[str, Any]:
    results: dict[str, Any] = {"settings": asdict(settings), "runs": [], "latency": {}}

    server = SoakServer("--backend", "echo", "--delay", str(settings.echo_delay))
    try:
        say(f"echo: {settings.echo_streams} streams at {settings.echo_concurrency} concurrent")
        await run_plans(
            server.url,
            make_plans(64, ECHO_PROMPTS, seed=99, drop_share=0, slow_share=0),
            concurrency=32,
            model="echo",
            max_tokens=settings.echo_tokens,
        )
        run = await soak(
            server, "echo", make_plans(settings.echo_streams, ECHO_PROMPTS, seed=1),
            concurrency=settings.echo_concurrency, model="echo", max_tokens=settings.echo_tokens,
            solo=None, exact=False,
        )  # fmt: skip
        results["runs"].append(run)
        say(f"echo: {run.tally} passed={run.passed}")
        long_words = " ".join(f"w{i}" for i in range(20000))
        results["latency"]["echo"] = await stalled_latency(
            server.url, "echo", settings,
            healthy_body=chat_body("echo", " ".join(f"h{i}" for i in range(400)), 400),
            stalled_body=chat_body("echo", long_words, 20000),
        )  # fmt: skip
        say(f"echo latency: {results['latency']['echo']}")
    finally:
        server.close()

    for precision in ("int8", "fp32"):
        directory = model_dir(f"smollm2-135m-instruct-{precision}")
        if directory is None:
            say(f"{precision}: no prepared model (run `tokenwire prepare --precision {precision}`)")
            continue
        server = SoakServer(
            "--backend", "onnx", "--model", str(directory), "--max-batch", str(settings.model_batch)
        )
        try:
            async with httpx.AsyncClient(base_url=server.url) as client:
                model = (await client.get("/v1/models")).json()["data"][0]["id"]
            solo = await solo_texts(server.url, model, settings.model_tokens)
            await run_plans(
                server.url,
                make_plans(16, MODEL_PROMPTS, seed=98, drop_share=0, slow_share=0),
                concurrency=16,
                model=model,
                max_tokens=settings.model_tokens,
            )
            say(
                f"{precision}: {settings.model_streams} streams at {settings.model_concurrency} concurrent"
            )
            run = await soak(
                server, f"onnx-{precision}", make_plans(settings.model_streams, MODEL_PROMPTS, seed=2, max_drop_delay=1.5),
                concurrency=settings.model_concurrency, model=model, max_tokens=settings.model_tokens,
                solo=solo, exact=precision == "fp32",
            )  # fmt: skip
            results["runs"].append(run)
            say(f"{precision}: {run.tally} differs={run.differs_from_solo} passed={run.passed}")
            if precision == "int8":
                results["readiness_flip_seconds"] = await readiness_flip(server.url, model)
                say(f"readiness flipped in {results['readiness_flip_seconds'] * 1000:.0f} ms")
        finally:
            server.close()
        if precision == "int8":
            batch = settings.healthy + settings.stalled + 2
            server = SoakServer(
                "--backend", "onnx", "--model", str(directory), "--max-batch", str(batch)
            )
            try:
                results["latency"]["onnx-int8"] = await stalled_latency(
                    server.url, model, settings,
                    healthy_body=chat_body(model, LONG_PROMPT, settings.healthy_tokens),
                    stalled_body=chat_body(model, LONG_PROMPT, 1500),
                )  # fmt: skip
                say(f"int8 latency: {results['latency']['onnx-int8']}")
            finally:
                server.close()
    return results


def main(*, quick: bool, results_dir: Path, docs: Path | None, command: str) -> None:
    settings = Settings.quick() if quick else Settings()
    results = anyio.run(run_all, settings)
    runs: list[RunResult] = results.pop("runs")
    document = {
        "machine": asdict(report.Machine.current()),
        "command": command,
        **results,
        "runs": [{**asdict(r), "passed": r.passed} for r in runs],
    }
    path = report.write_json(results_dir / "soak.json", document)
    print(f"soak: results in {path}")
    failed = [f"{r.name}: {k}" for r in runs for k, ok in r.checks.items() if not ok]
    for line in failed:
        print(f"soak: FAILED {line}")
    if docs is not None:
        report.update_docs(docs.parent / "reliability.md", DOCS_SECTION, markdown(document))
    if failed:
        raise SystemExit(1)


def markdown(document: dict[str, Any]) -> str:
    rows = [
        "| run | streams | completed | dropped by design | failed | 5xx | cancelled queued / prefill / decode | RSS first → last quarter | differs from solo | passed |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for run in document["runs"]:
        t, c = run["tally"], run["cancelled_by_phase"]
        rows.append(
            f"| {run['name']} | {t['streams']} | {t['completed']} | {t['dropped']} | {t['failed']} | "
            f"{t['server_errors']} | {c['queued']:.0f} / {c['prefill']:.0f} / {c['decode']:.0f} | "
            f"{run['rss_first_quarter'] / 2**20:.0f} → {run['rss_last_quarter'] / 2**20:.0f} MiB | "
            f"{'—' if run['differs_from_solo'] is None else run['differs_from_solo']} | "
            f"{'yes' if run['passed'] else '**no**'} |"
        )
    latency = [
        "| backend | healthy alone p99 / max | + 10 stalled readers p99 / max | + 10 reading clients p99 / max |",
        "|---|---|---|---|",
    ]
    for name, f in document["latency"].items():
        latency.append(
            f"| {name} | {f['alone_p99'] * 1000:.1f} / {f['alone_max'] * 1000:.0f} ms | "
            f"{f['stalled_p99'] * 1000:.1f} / {f['stalled_max'] * 1000:.0f} ms | "
            f"{f['readers_p99'] * 1000:.1f} / {f['readers_max'] * 1000:.0f} ms |"
        )
    machine = document["machine"]
    flip = document.get("readiness_flip_seconds")
    return "\n".join(
        [
            f"Measured {machine['date']} on {machine['cpu']}, {machine['cores']} cores; "
            f"command: `{document['command']}`.",
            "",
            *rows,
            "",
            *latency,
            "",
            f"Readiness turned 503 {flip * 1000:.0f} ms after the model's runs started failing."
            if flip is not None
            else "Readiness flip: not measured (no prepared model).",
        ]
    )
