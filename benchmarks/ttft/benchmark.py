"""TTFT under load: first tokens of short, bursty and long prompts while 8 streams decode,
and the largest gap those streams see meanwhile, with the old prefill plan and the new one.

In-process `OnnxBackend`s on the prepared SmolLM2 int8, one per condition, all loaded at
once: `before` (`batch_prefill=False`: one prompt per run, chunks cut wherever the 30 ms
budget ends), `after` (fresh prompts that fit the budget run whole, several in one run) and
`goal` (as `after`, the budget from `target_itl_ms`), and where the model has them (`tokenwire
prepare --prefill-graph --bf16-prefill-graph`) `after` and `goal` with the int8 and with
the bf16 prefill graph. Each round runs every condition in
turn (the order rotates), so machine noise hits all alike: `load` streams keep generating,
then probes arrive one after another: a short prompt, a burst of short prompts at once, a
long prompt. A probe's window runs from its request to the last first token it waited for;
the gap is the largest between two tokens of a background stream that overlaps it.

A first part times the model alone: fresh prompts prefilled in one run against one by one.

Run alone: `python -m benchmarks.ttft [--quick] [--update-docs] [--model DIR]`.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from benchmarks._shared import report
from benchmarks._shared.prepared_model import find_model
from benchmarks._shared.standalone import run_standalone
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.backends.onnx.manifest import ModelManifest
from tokenwire.events import TokenDelta
from tokenwire.requests import ChatMessage, GenerationRequest

SECTION = "ttft"
BACKGROUND = "Write a detailed essay about the history of the Roman Empire."
SHORT = (  # about 37 tokens each once rendered, within a few tokens of each other
    "Name the capital city of France.",
    "Name the capital city of Japan.",
    "Name the largest city of Italy.",
    "Name the longest river of Spain.",
)
PASSAGE = (
    "The river town kept its old stone bridge long after the railway came. Every spring the "
    "water rose to the second arch, and the children counted the days until it fell again. "
    "Merchants crossed at dawn with carts of apples, wool and salted fish. "
)


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int = 4
    load: int = 8
    burst: int = 4
    background_tokens: int = 400
    long_tokens: int = 540
    probe_tokens: int = 2
    target_itl_ms: float = 100.0
    max_context: int = 1024
    cost_rows: tuple[int, ...] = (1, 2, 4, 8)
    cost_reps: int = 5
    conditions: tuple[str, ...] = ("before", "after", "goal")

    @classmethod
    def quick(cls) -> Settings:
        return cls(rounds=1, load=2, burst=2, background_tokens=40, long_tokens=100,
                   max_context=256, cost_rows=(1, 2), cost_reps=1)  # fmt: skip

    def options(self, condition: str) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "before": {"batch_prefill": False},
            "after": {},
            "goal": {"target_itl_ms": self.target_itl_ms},
            "int8 graph": {"prefill_graph": "int8"},
            "bf16 graph": {"prefill_graph": "bf16"},
            "int8 graph, goal": {"prefill_graph": "int8", "target_itl_ms": self.target_itl_ms},
            "bf16 graph, goal": {"prefill_graph": "bf16", "target_itl_ms": self.target_itl_ms},
            "int8 graph + batches, goal": {"prefill_graph": "int8", "prefill_graph_decode_rows": 2,
                                           "target_itl_ms": self.target_itl_ms},
        }[condition]  # fmt: skip
        return {"max_batch": self.load + self.burst, "max_context": self.max_context, **extra}


@dataclass(slots=True)
class Probe:
    round: int
    condition: str
    kind: str  # short, burst, long
    ttfts_s: list[float]
    max_gap_s: float
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class Cost:
    rows: int
    prompt_tokens: int
    one_by_one_ms: float
    batched_ms: float

    @property
    def ratio(self) -> float:
        return self.batched_ms / self.one_by_one_ms


@dataclass(slots=True)
class Background:
    """`count` streams that restart when they end; every token's arrival clock is kept."""

    backend: OnnxBackend
    count: int
    tokens: int
    runs: list[list[float]] = field(default_factory=list)

    async def stream(self, started: anyio.Event, ready: list[int]) -> None:
        while True:
            clocks: list[float] = []
            self.runs.append(clocks)
            async with aclosing(self.backend.generate(chat(BACKGROUND, self.tokens))) as events:
                async for event in events:
                    if isinstance(event, TokenDelta):
                        clocks.append(time.perf_counter())
                        if len(clocks) == 1:
                            ready[0] += 1
                            if ready[0] == self.count:
                                started.set()

    def max_gap(self, start: float, end: float) -> float:
        """The largest gap between two tokens of a stream that overlaps `[start, end]`."""
        gaps = [
            b - a
            for clocks in self.runs
            for a, b in itertools.pairwise(clocks)
            if b >= start and a <= end
        ]
        return max(gaps, default=0.0)


def chat(text: str, tokens: int) -> GenerationRequest:
    return GenerationRequest(
        model="bench", messages=(ChatMessage("user", text),), temperature=0.0, max_tokens=tokens
    )


def prompt_tokens(backend: OnnxBackend, text: str) -> list[int]:
    assert backend.chat_template is not None and backend.tokenizer is not None
    rendered = backend.chat_template.render([ChatMessage("user", text)])
    return list(backend.tokenizer.encode(rendered, add_special_tokens=False).ids)


def long_text(backend: OnnxBackend, target: int) -> str:
    text = "Summarize the following text in one sentence.\n\n"
    while len(prompt_tokens(backend, text)) < target:
        text += PASSAGE
    return text


async def first_token(backend: OnnxBackend, text: str, tokens: int) -> float:
    sent = time.perf_counter()
    async with aclosing(backend.generate(chat(text, tokens))) as events:
        async for event in events:
            if isinstance(event, TokenDelta):
                return time.perf_counter() - sent
    raise RuntimeError("the probe streamed no token")


async def probe(
    backend: OnnxBackend, background: Background, texts: Sequence[str], settings: Settings
) -> tuple[list[float], float]:
    ttfts: list[float] = []

    async def one(text: str) -> None:
        ttfts.append(await first_token(backend, text, settings.probe_tokens))

    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for text in texts:
            group.start_soon(one, text)
    return ttfts, background.max_gap(start, time.perf_counter())


async def under_load(
    backends: dict[str, OnnxBackend], settings: Settings, long: str, round_: int
) -> list[Probe]:
    probes: list[Probe] = []
    order = list(settings.conditions)
    order = order[round_ % len(order) :] + order[: round_ % len(order)]
    for condition in order:
        backend = backends[condition]
        background = Background(backend, settings.load, settings.background_tokens)
        started, ready = anyio.Event(), [0]
        async with anyio.create_task_group() as group:
            for _ in range(settings.load):
                group.start_soon(background.stream, started, ready)
            await started.wait()
            await anyio.sleep(0.3)
            shorts = SHORT * (1 + settings.burst // len(SHORT))
            for kind, texts in (
                ("short", [SHORT[round_ % len(SHORT)]]),
                ("burst", list(shorts[: settings.burst])),
                ("long", [long]),
                ("short", [SHORT[(round_ + 1) % len(SHORT)]]),
                ("burst", list(shorts[: settings.burst])),
            ):
                ttfts, gap = await probe(backend, background, texts, settings)
                tokens = max(len(prompt_tokens(backend, t)) for t in texts)
                probes.append(Probe(round_, condition, kind, ttfts, gap, tokens))
                print(f"round {round_} {condition} {kind}: TTFT {max(ttfts) * 1e3:,.0f} ms, "
                      f"gap {gap * 1e3:,.0f} ms", file=sys.stderr, flush=True)  # fmt: skip
                await anyio.sleep(0.2)
            group.cancel_scope.cancel()
    return probes


def prefill_costs(backend: OnnxBackend, settings: Settings) -> list[Cost]:
    """Model time of `rows` fresh short prompts: one run against one run each (in a worker,
    with nothing else running)."""
    assert backend._loop is not None  # the runner of a started backend, driven directly
    runner = backend._loop.runner
    ids = [np.array(prompt_tokens(backend, t)) for t in SHORT]
    costs = []
    for rows in settings.cost_rows:
        prompts = [ids[i % len(ids)] for i in range(rows)]
        alone, together = [], []
        for _ in range(settings.cost_reps):
            started = time.perf_counter()
            for prompt in prompts:
                runner.prefill(0, prompt)
                runner.release(0)
            alone.append(time.perf_counter() - started)
            started = time.perf_counter()
            runner.prefill_fresh(0, prompts)
            together.append(time.perf_counter() - started)
            for slot in range(rows):
                runner.release(slot)
        costs.append(
            Cost(
                rows,
                max(len(p) for p in prompts),
                statistics.median(alone) * 1e3,
                statistics.median(together) * 1e3,
            )
        )
    return costs


async def run(model: Path, settings: Settings) -> tuple[list[Cost], list[Probe]]:
    backends = {c: OnnxBackend(model, **settings.options(c)) for c in settings.conditions}
    for backend in backends.values():
        await backend.start()
    try:
        after = backends["after"]
        costs = await anyio.to_thread.run_sync(prefill_costs, after, settings)
        long = long_text(after, settings.long_tokens)
        for backend in backends.values():  # warm-up: first runs of each shape
            await first_token(backend, long, 1)
            await first_token(backend, SHORT[0], 1)
        probes: list[Probe] = []
        for round_ in range(settings.rounds):
            probes += await under_load(backends, settings, long, round_)
    finally:
        for backend in reversed(backends.values()):  # each holds a task group: LIFO
            await backend.close()
    return costs, probes


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def summarize(probes: Sequence[Probe], settings: Settings) -> list[dict[str, Any]]:
    rows = []
    for kind in ("short", "burst", "long"):
        for condition in settings.conditions:
            group = [p for p in probes if p.kind == kind and p.condition == condition]
            ttfts = [t for p in group for t in p.ttfts_s]
            gaps = [p.max_gap_s for p in group]
            rows.append({
                "kind": kind, "condition": condition, "samples": len(ttfts),
                "prompt_tokens": max(p.prompt_tokens for p in group),
                "ttft_p50_ms": percentile(ttfts, 0.5) * 1e3,
                "ttft_p99_ms": percentile(ttfts, 0.99) * 1e3,
                "gap_p50_ms": percentile(gaps, 0.5) * 1e3, "gap_max_ms": max(gaps) * 1e3,
            })  # fmt: skip
    return rows


def tables(costs: Sequence[Cost], rows: Sequence[dict[str, Any]], settings: Settings) -> str:
    cost = ["| fresh prompts | tokens each | one run each | one run | batched ÷ one by one |",
            "|---:|---:|---:|---:|---:|"]  # fmt: skip
    cost += [
        f"| {c.rows} | {c.prompt_tokens} | {c.one_by_one_ms:.1f} ms | {c.batched_ms:.1f} ms | "
        f"{c.ratio:.2f}× |"
        for c in costs
    ]
    load = ["| probe | scheduler | TTFT p50 | TTFT p99 | vs before (p50 / p99) | largest gap of the running streams (p50 / max over probes) |",
            "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    names = {
        "before": "before (`batch_prefill=false`)",
        "after": "after (same 30 ms budget)",
        "goal": f"after, `target_itl_ms={settings.target_itl_ms:g}`",
        "int8 graph": "after, `prefill_graph=int8`",
        "bf16 graph": "after, `prefill_graph=bf16`",
        "int8 graph, goal": f"after, `prefill_graph=int8`, `target_itl_ms={settings.target_itl_ms:g}`",
        "bf16 graph, goal": f"after, `prefill_graph=bf16`, `target_itl_ms={settings.target_itl_ms:g}`",
        "int8 graph + batches, goal": "after, `prefill_graph=int8`, `prefill_graph_decode_rows=2`, "
                                      f"`target_itl_ms={settings.target_itl_ms:g}`",
    }  # fmt: skip
    base = {r["kind"]: r for r in rows if r["condition"] == "before"}
    for r in rows:
        b = base[r["kind"]]
        kind = {"short": "1 short", "burst": f"{settings.burst} short at once", "long": "1 long"}
        load.append(
            f"| {kind[r['kind']]} ({r['prompt_tokens']} tok) | {names[r['condition']]} | "
            f"{r['ttft_p50_ms']:,.0f} ms | {r['ttft_p99_ms']:,.0f} ms | "
            f"{r['ttft_p50_ms'] / b['ttft_p50_ms']:.2f}× / {r['ttft_p99_ms'] / b['ttft_p99_ms']:.2f}× | "
            f"{r['gap_p50_ms']:,.0f} / {r['gap_max_ms']:,.0f} ms |"
        )
    return "\n".join(cost) + "\n\n" + "\n".join(load)


def main(
    *, quick: bool, results_dir: Path, docs: Path | None, command: str, model: Path | None = None
) -> list[dict[str, Any]]:
    """Run the benchmark, print its tables, write `ttft.json` (and the docs section)."""
    settings = Settings.quick() if quick else Settings()
    model = find_model(model)
    manifest = ModelManifest.read(model)
    graphs = (
        ("int8 graph", manifest.prefill_model_file),
        ("bf16 graph", manifest.prefill_bf16_file),
    )
    settings = replace(settings, conditions=settings.conditions + tuple(
        condition for name, file in graphs if file is not None
        for condition in (name, f"{name}, goal")))  # fmt: skip
    if manifest.prefill_model_file is not None:
        settings = replace(settings, conditions=(*settings.conditions, "int8 graph + batches, goal"))
    load_before = os.getloadavg()
    costs, probes = anyio.run(run, model, settings)
    load_after = os.getloadavg()
    rows = summarize(probes, settings)
    machine = report.Machine.current()
    text = tables(costs, rows, settings)
    loads = f"{'/'.join(f'{x:.1f}' for x in load_before)} before, " + "/".join(
        f"{x:.1f}" for x in load_after
    )
    print(text, f"load averages (1/5/15 min): {loads} after", sep="\n")
    path = report.write_json(
        results_dir / "ttft.json",
        {"machine": asdict(machine), "settings": asdict(settings), "command": command,
         "model": model.name, "load_average": {"before": load_before, "after": load_after},
         "costs": [{**asdict(c), "ratio": c.ratio} for c in costs], "summaries": rows,
         "probes": [asdict(p) for p in probes]},
    )  # fmt: skip
    print(f"ttft: results in {path}")
    if docs is not None:
        header = (
            f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores (shared), Python "
            f"{machine.python}. Command: `{command}` — {model.name}, in-process `OnnxBackend`s "
            f"(`max_batch={settings.load + settings.burst}`), {settings.rounds} rounds, each "
            f"running every scheduler in turn under {settings.load} greedy streams. Load "
            f"averages (1/5/15 min): {loads} after."
        )
        report.update_docs(docs, SECTION, f"{header}\n\n{text}")
    return rows


def cli(argv: Sequence[str] | None = None) -> None:
    run_standalone("ttft", __doc__, main, argv)
