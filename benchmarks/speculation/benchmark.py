"""Speculation: tokens/s with and without prompt lookup drafting, side by side.

In one process, one `OnnxBackend` per condition serves the same prepared model: plain
decoding, speculation with its defaults, (one stream) priced drafting
(`speculation_priced=true`), (one stream, where the model has an int8 prefill graph) drafts
verified on that graph (`INT8_GRAPH`), and (8 streams) speculation forced on for every batch
size. Each round runs every prompt under every condition back to back, so machine noise
hits them alike; ratios are taken per round, then the median. Greedy, so the texts are
compared with plain decoding's. A stream's rate is its tokens over request-to-last-delta, as
a user waits for them; its decode rate leaves the prompt out (the tokens after the first
delta over first-to-last delta), which is what drafting changes.

Run alone: `python -m benchmarks.speculation [--quick] [--update-docs] [--model DIR]`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

from benchmarks._shared import report
from benchmarks._shared.bandwidth import read_bandwidth, weight_bytes
from benchmarks._shared.prepared_model import find_model
from benchmarks._shared.standalone import run_standalone
from benchmarks.speculation.verify_cost import ON_INT8_GRAPH
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.backends.onnx.manifest import ModelManifest
from tokenwire.events import TokenDelta
from tokenwire.requests import ChatMessage, GenerationRequest

SECTION = "speculation"
TARGET_COPY, TARGET_OPEN = 1.8, 0.97

_DOC = (
    "The Tokenwire project streams tokens from language models to clients over SSE, NDJSON "
    "and WebSocket transports. Each request passes through middlewares for caching, metrics "
    "and cancellation before it reaches a backend. The default backend runs a small model "
    "with ONNX Runtime on the CPU, batching requests continuously so that many streams share "
    "each step of the model."
)
_CODE = (
    "def total(items):\n    result = 0\n    for item in items:\n        result += item.price\n"
    "    return result\n"
)
_RECORD = (
    "Order 1042 was placed by Maria Lopez on 3 March 2025. She ordered two blue kettles at "
    "24.50 euros each, to be delivered to 12 Harbour Street, Lisbon."
)
PROMPTS: dict[str, tuple[bool, tuple[tuple[str, str], ...]]] = {
    "quote": (True, (("user", f"Here is a document:\n\n{_DOC}\n\nQuote the document in full."),)),
    "summarize": (True, (("user", f"{_DOC}\n\nSummarize the text above in two sentences."),)),
    "edit code": (True, (("user", f"Rename `total` to `order_total` in this code:\n\n{_CODE}"),)),
    "extract JSON": (
        True,
        (
            (
                "user",
                f"{_RECORD}\n\nExtract the customer name, date, item and "
                "address from the text as JSON.",
            ),
        ),
    ),
    "chat recall": (
        True,
        (
            ("user", "My shopping list: apples, bread, milk, eggs, cheese, rice, coffee."),
            ("assistant", "Got it: apples, bread, milk, eggs, cheese, rice, coffee."),
            ("user", "Repeat my shopping list, one item per line."),
        ),
    ),
    "essay": (False, (("user", "Write an essay about the history of bicycles."),)),
}
CONDITIONS = ("plain", "speculation", "priced", "int8 graph", "forced")
# Drafts verified on the int8 prefill graph, whose AMX/VNNI GEMM makes a run of several
# positions cheaper (docs/benchmarks.md, "Speculation"), and so longer drafts worth it.
# Prompts stay on the decode graph, as in the other conditions: the ratio is the drafts' own.
INT8_GRAPH: dict[str, Any] = {
    **ON_INT8_GRAPH,
    "speculation": True,
    "speculative_tokens": 16,
    "prefill_graph_min_tokens": 1 << 30,
}


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int = 2
    streams: tuple[int, ...] = (1, 8)
    max_tokens: int = 128
    models: tuple[str, ...] = ("smollm2-135m-instruct-int8", "smollm2-135m-instruct-int4")
    prompts: tuple[str, ...] = tuple(PROMPTS)

    @classmethod
    def quick(cls) -> Settings:
        # The short prompts only: the tiny test model's context is 256 tokens.
        return cls(1, (1, 2), 12, (), ("chat recall", "essay"))


@dataclass(frozen=True, slots=True)
class Sample:
    model: str
    round: int
    prompt: str
    streams: int
    condition: str
    tokens: int
    seconds: float
    drafted: int
    accepted: int
    same_text: bool
    decode_tokens: int  # after each stream's first delta
    decode_seconds: float  # from the first stream's first delta to the last delta

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def decode_rate(self) -> float:
        return self.decode_tokens / self.decode_seconds if self.decode_seconds else 0.0


@dataclass(frozen=True, slots=True)
class Summary:
    model: str
    streams: int
    prompt: str
    condition: str
    tokens_per_s: float  # aggregate over the streams, median over rounds
    ratio: float  # median over rounds of this rate ÷ the plain rate of the same round
    decode_ratio: float  # the same for the decode rate (prompt left out)
    acceptance: float  # accepted ÷ drafted tokens
    same_text: bool


def _request(prompt: str, settings: Settings, index: int) -> GenerationRequest:
    turns = PROMPTS[prompt][1]
    if index:  # other streams get a distinct last turn, so their texts are not one batch row
        role, text = turns[-1]
        turns = (*turns[:-1], (role, f"{text} ({index})"))
    return GenerationRequest(
        model="bench",
        messages=tuple(ChatMessage(role, text) for role, text in turns),
        temperature=0.0,
        max_tokens=settings.max_tokens,
    )


@dataclass(frozen=True, slots=True)
class Batch:
    outputs: list[list[int]]
    seconds: float  # request to last delta
    decode_tokens: int
    decode_seconds: float


async def _batch(backend: OnnxBackend, prompt: str, streams: int, settings: Settings) -> Batch:
    outputs: list[list[int]] = [[] for _ in range(streams)]
    firsts: list[tuple[float, int]] = []  # each stream's first delta: when, how many tokens
    started = time.perf_counter()

    async def one(index: int) -> None:
        async for event in backend.generate(_request(prompt, settings, index)):
            if isinstance(event, TokenDelta):
                if not outputs[index]:
                    firsts.append((time.perf_counter(), len(event.token_ids)))
                outputs[index] += event.token_ids

    async with anyio.create_task_group() as group:
        for index in range(streams):
            group.start_soon(one, index)
    ended = time.perf_counter()
    decode_tokens = sum(map(len, outputs)) - sum(n for _, n in firsts)
    decode_seconds = ended - min((t for t, _ in firsts), default=ended)
    return Batch(outputs, ended - started, decode_tokens, decode_seconds)


async def run(model: Path, settings: Settings) -> list[Sample]:
    widest = max(settings.streams)
    options: dict[str, dict[str, Any]] = {
        "plain": {"speculation": False},
        "speculation": {"speculation": True},
        "priced": {"speculation": True, "speculation_priced": True},
        "forced": {"speculation": True, "speculation_max_batch": widest},
    }
    if ModelManifest.read(model).prefill_model_file is not None:
        options["int8 graph"] = INT8_GRAPH
    backends = {name: OnnxBackend(model, max_batch=widest, **o) for name, o in options.items()}
    samples: list[Sample] = []
    for backend in backends.values():
        await backend.start()
    try:
        for backend in backends.values():  # warm-up: first runs allocate
            await _batch(backend, settings.prompts[0], 1, settings)
        for round_ in range(settings.rounds):
            for prompt in settings.prompts:
                for streams in settings.streams:
                    reference: list[list[int]] | None = None
                    for name, backend in backends.items():
                        if name == "forced" and streams == 1:
                            continue  # the same as "speculation" at one stream
                        if name in ("priced", "int8 graph") and streams > 1:
                            continue  # compared where drafts are verified: one stream
                        assert backend._loop is not None
                        speculator = backend._loop.speculator
                        before = (speculator.drafted, speculator.accepted) if speculator else (0, 0)
                        batch = await _batch(backend, prompt, streams, settings)
                        after = (speculator.drafted, speculator.accepted) if speculator else (0, 0)
                        outputs = batch.outputs
                        reference = outputs if reference is None else reference
                        samples.append(Sample(
                            model.name, round_, prompt, streams, name, sum(map(len, outputs)),
                            batch.seconds, after[0] - before[0], after[1] - before[1],
                            outputs == reference, batch.decode_tokens, batch.decode_seconds,
                        ))  # fmt: skip
    finally:
        for backend in reversed(backends.values()):  # each holds a task group: LIFO
            await backend.close()
    return samples


def summarize(samples: Sequence[Sample]) -> list[Summary]:
    summaries = []
    keys = sorted({(s.model, s.streams, s.prompt, s.condition) for s in samples},
                  key=lambda k: (k[0], k[1], list(PROMPTS).index(k[2]), CONDITIONS.index(k[3])))  # fmt: skip
    for model, streams, prompt, condition in keys:
        group = [s for s in samples if (s.model, s.streams, s.prompt, s.condition) ==
                 (model, streams, prompt, condition)]  # fmt: skip
        ratios, decode_ratios = [], []
        for s in group:
            base = next(b for b in samples if (b.model, b.streams, b.prompt, b.round) ==
                        (model, streams, prompt, s.round) and b.condition == "plain")  # fmt: skip
            ratios.append(s.rate / base.rate if base.rate else 0.0)
            decode_ratios.append(s.decode_rate / base.decode_rate if base.decode_rate else 0.0)
        drafted = sum(s.drafted for s in group)
        summaries.append(Summary(
            model, streams, prompt, condition, statistics.median(s.rate for s in group),
            statistics.median(ratios), statistics.median(decode_ratios),
            sum(s.accepted for s in group) / drafted if drafted else 0.0,
            all(s.same_text for s in group),
        ))  # fmt: skip
    return summaries


def table(summaries: Sequence[Summary], bounds: dict[str, float]) -> tuple[str, str]:
    rows = ["| model | streams | prompt | condition | tok/s | vs plain (paired) | decode rate vs plain | acceptance | of bandwidth bound | same text |",
            "|---|---:|---|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for s in summaries:
        bound = bounds.get(s.model, 0.0)
        fraction = f"{s.tokens_per_s / bound:.0%}" if bound and s.streams == 1 else "—"
        acceptance = f"{s.acceptance:.0%}" if s.condition != "plain" else "—"
        decode = f"{s.decode_ratio:.2f}×" if s.streams == 1 else "—"  # one stream's own span
        rows.append(
            f"| {s.model.removeprefix('smollm2-135m-instruct-')} | {s.streams} | {s.prompt} | "
            f"{s.condition} | {s.tokens_per_s:.1f} | {s.ratio:.2f}× | {decode} | {acceptance} | "
            f"{fraction} | {'yes' if s.same_text else 'no'} |"
        )
    verdicts = []
    for model in sorted({s.model for s in summaries}):
        one = [s for s in summaries if s.model == model and s.streams == 1]
        for condition in ("speculation", "int8 graph"):
            ratios = [s for s in one if s.condition == condition]
            copy = [s.ratio for s in ratios if PROMPTS[s.prompt][0]]
            open_ = [s.ratio for s in ratios if not PROMPTS[s.prompt][0]]
            if copy and open_:
                gm = statistics.geometric_mean(copy)
                decode = statistics.geometric_mean(
                    [s.decode_ratio for s in ratios if PROMPTS[s.prompt][0]]
                )
                verdicts.append(
                    f"{model}, one stream, {condition}: copy-heavy geometric mean {gm:.2f}× "
                    f"(target ≥ {TARGET_COPY}×: {'met' if gm >= TARGET_COPY else 'not met'}; "
                    f"decode rate {decode:.2f}×); "
                    f"open-ended {min(open_):.2f}× (target ≥ {TARGET_OPEN}×: "
                    f"{'met' if min(open_) >= TARGET_OPEN else 'not met'})."
                )
    return "\n".join(rows), " ".join(verdicts)


def main(
    *, quick: bool, results_dir: Path, docs: Path | None, command: str, model: Path | None = None
) -> list[Summary]:
    """Run the benchmark, print its table, write `speculation.json` (and the docs section)."""
    settings = Settings.quick() if quick else Settings()
    first = find_model(model)
    # The other precisions prepared beside it (int4), when they are there.
    # A sibling prepared from the same model (the int8 build beside the int8 build with a
    # prefill graph) has the same decode graph: measured once.
    name = ModelManifest.read(first).name
    models = [first] + [first.parent / n for n in settings.models
                        if n != first.name and (first.parent / n / "manifest.json").is_file()
                        and ModelManifest.read(first.parent / n).name != name]  # fmt: skip
    load_before = os.getloadavg()
    bandwidth = read_bandwidth(2)
    bounds = {m.name: bandwidth / weight_bytes(m / "model.onnx").per_token_bytes for m in models}
    samples: list[Sample] = []
    for directory in models:
        samples += anyio.run(run, directory, settings)
    load_after = os.getloadavg()
    summaries = summarize(samples)
    machine = report.Machine.current()
    text, verdict = table(summaries, bounds)
    print(text, verdict, sep="\n")
    path = report.write_json(
        results_dir / "speculation.json",
        {"machine": asdict(machine), "settings": asdict(settings), "command": command,
         "load_average": {"before": load_before, "after": load_after},
         "read_bandwidth_bytes_per_s": bandwidth, "bound_tokens_per_s": bounds,
         "summaries": [asdict(s) for s in summaries], "samples": [asdict(s) for s in samples]},
    )  # fmt: skip
    print(f"speculation: results in {path}")
    if docs is not None:
        header = (
            f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores (shared with other "
            f"work), Python {machine.python}. Command: `{command}` — in-process `OnnxBackend`s, "
            f"{settings.rounds} rounds alternating plain / speculation (defaults) / priced "
            f"(`speculation_priced=true`, one stream) / int8 graph (every match drafted at 16 "
            f"tokens and verified on the int8 prefill graph, one stream, where the model has "
            f"one) / forced "
            f"(speculation at every batch size), greedy, up to {settings.max_tokens} tokens. "
            f"Load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in load_before)} before, "
            f"{'/'.join(f'{x:.1f}' for x in load_after)} after. Read bandwidth "
            f"{bandwidth / 1e9:.1f} GB/s; the batch-1 bound is bandwidth ÷ weight bytes per token."
        )
        report.update_docs(docs, SECTION, f"{header}\n\n{text}\n\n{verdict}")
    return summaries


def cli(argv: Sequence[str] | None = None) -> None:
    run_standalone("speculation", __doc__, main, argv)
