"""Constrained decoding: decode speed and TTFT with and without a JSON Schema constraint.

One `OnnxBackend` in this process runs the prepared SmolLM2 int8. Rounds alternate
unconstrained and constrained batches of the same greedy requests (1 stream, then 8
together), so machine noise hits both alike; a second backend, with grammar fast-forward
(tokens the grammar forces fed in one run, unsampled), runs the constrained batch too, and
the first one has it off. A stream's decode rate is its tokens after the
first over the time from its first to its last delta; TTFT is request to first delta (a
constrained request's includes compiling its grammar). The mask time is llguidance's
`fill_next_token_bitmask` plus unpacking, replayed over the constrained outputs' tokens.

Run alone: `python -m benchmarks.constrained [--quick] [--update-docs] [--model DIR]`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio

from benchmarks._shared import report
from benchmarks._shared.prepared_model import find_model
from benchmarks._shared.standalone import run_standalone
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.events import TokenDelta
from tokenwire.requests import ChatMessage, GenerationRequest, OutputConstraint

SECTION = "constrained"
CONDITIONS = ((False, False), (True, False), (True, True))
"""(constrained, fast-forward) of each batch in a round, in the order they run."""
TARGET_COST = 0.05
"""Largest acceptable decode slowdown under a constraint (5%)."""

_TEXT = {"type": "string", "maxLength": 40}
SCHEMA = {
    "type": "object",
    "properties": {
        "team": _TEXT,
        "members": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": _TEXT, "role": _TEXT, "age": {"type": "integer"}},
                "required": ["name", "role", "age"],
                "additionalProperties": False,
            },
            "minItems": 3,
            "maxItems": 6,
        },
    },
    "required": ["team", "members"],
    "additionalProperties": False,
}
TOPICS = ("a rowing team", "a film crew", "a research lab", "a rock band", "a kitchen brigade",
          "a football club", "a startup", "a choir")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int = 6
    streams: tuple[int, ...] = (1, 8)
    max_tokens: int = 64

    @classmethod
    def quick(cls) -> Settings:
        return cls(rounds=1, streams=(1, 2), max_tokens=12)


@dataclass(frozen=True, slots=True)
class Sample:
    round: int
    streams: int
    constrained: bool
    ttft_s: float
    decode_tokens_per_s: float
    tokens: int
    token_ids: tuple[int, ...]
    fast_forward: bool = False
    steps: int = 0  # the backend's decode steps meanwhile (one request's alone at 1 stream)


@dataclass(frozen=True, slots=True)
class Summary:
    streams: int
    constrained: bool
    fast_forward: bool
    tokens_per_s: float  # per stream, median
    aggregate_tokens_per_s: float  # per stream × streams
    ttft_p50_ms: float
    paired_ratio: float  # median over rounds of this round's rate ÷ its unconstrained rate
    forward_ratio: float = 0.0  # fast-forward only: paired rate ÷ constrained without it


def request(index: int, constrained: bool, settings: Settings) -> GenerationRequest:
    return GenerationRequest(
        model="bench",
        messages=(ChatMessage("user", f"Describe {TOPICS[index % len(TOPICS)]} as JSON."),),
        temperature=0.0,
        max_tokens=settings.max_tokens,
        constraint=OutputConstraint("json_schema", schema=SCHEMA) if constrained else None,
    )


async def one(
    backend: OnnxBackend, req: GenerationRequest, streams: int, round_: int = -1
) -> Sample:
    fast_forward = backend.fast_forward and req.constraint is not None
    assert backend._loop is not None
    steps = backend._loop.steps
    sent = time.perf_counter()
    stamps: list[float] = []
    ids: list[int] = []
    async for event in backend.generate(req):
        if isinstance(event, TokenDelta):
            stamps.append(time.perf_counter())
            ids += event.token_ids
    rate = (len(ids) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    return Sample(
        round_, streams, req.constraint is not None, stamps[0] - sent, rate, len(ids), tuple(ids),
        fast_forward, backend._loop.steps - steps,
    )  # fmt: skip


async def run(model: Path, settings: Settings) -> list[Sample]:
    backends = [
        OnnxBackend(model, max_batch=max(settings.streams), fast_forward=flag)
        for flag in (False, True)
    ]
    for backend in backends:
        await backend.start()
    samples: list[Sample] = []
    try:
        for backend in backends:  # warm-up: first runs, first mask
            await one(backend, request(0, True, settings), 1)
        for round_ in range(settings.rounds):
            for streams in settings.streams:
                for constrained, backend in ((False, backends[0]), (True, backends[0]),
                                             (True, backends[1])):  # fmt: skip

                    async def go(
                        index: int,
                        constrained: bool = constrained,
                        backend: OnnxBackend = backend,
                        n: int = streams,
                        r: int = round_,
                    ) -> None:
                        samples.append(
                            await one(backend, request(index, constrained, settings), n, r)
                        )

                    async with anyio.create_task_group() as group:
                        for index in range(streams):
                            group.start_soon(go, index)
    finally:
        for backend in reversed(backends):  # each holds a task group: LIFO
            await backend.close()
    return samples


def mask_times(model: Path, samples: Sequence[Sample]) -> list[float]:
    """Replay the constrained outputs through fresh matchers, timing each mask."""
    from tokenwire.backends.onnx.constraints import ConstraintCompiler
    from tokenwire.backends.onnx.manifest import ModelManifest

    manifest = ModelManifest.read(model)
    compiler = ConstraintCompiler(
        (model / manifest.tokenizer_file).read_text("utf-8"), manifest.eos_token_ids[0]
    )
    grammar = compiler.grammar(request(0, True, Settings()))
    assert grammar is not None
    times: list[float] = []
    for sample in (s for s in samples if s.constrained and not s.fast_forward):
        constraint = compiler.matcher(*grammar)
        for token in sample.token_ids:
            constraint.allowed()
            constraint.consume(token)
        times += constraint.mask_seconds
    return times


def summarize(samples: Sequence[Sample]) -> list[Summary]:
    summaries = []
    for streams in sorted({s.streams for s in samples}):
        for constrained, ff in CONDITIONS:
            group = [s for s in samples if (s.streams, s.constrained, s.fast_forward) ==
                     (streams, constrained, ff)]  # fmt: skip
            if not group:
                continue
            rate = statistics.median(s.decode_tokens_per_s for s in group)
            ttft = statistics.median(s.ttft_s for s in group) * 1e3
            summaries.append(
                Summary(
                    streams,
                    constrained,
                    ff,
                    rate,
                    rate * streams,
                    ttft,
                    _paired(samples, streams, (constrained, ff), (False, False)),
                    _paired(samples, streams, (True, True), (True, False)) if ff else 0.0,
                )
            )
    return summaries


def _paired(
    samples: Sequence[Sample],
    streams: int,
    condition: tuple[bool, bool],
    baseline: tuple[bool, bool],
) -> float:
    """The machine is shared: compare each round's batch with the `baseline` batch of the
    same round (run just before it), then take the median over rounds."""
    ratios = []
    for round_ in sorted({s.round for s in samples}):

        def rate(flags: tuple[bool, bool], r: int = round_) -> float:
            return statistics.median(
                s.decode_tokens_per_s
                for s in samples
                if s.round == r
                and s.streams == streams
                and (s.constrained, s.fast_forward) == flags
            )

        base = rate(baseline)
        ratios.append(rate(condition) / base if base else 0.0)
    return statistics.median(ratios)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def table(summaries: Sequence[Summary], masks: Sequence[float]) -> tuple[str, str]:
    rows = ["| streams | constraint | decode tok/s per stream | aggregate tok/s | vs unconstrained (paired) | TTFT p50 | TTFT vs unconstrained |",
            "|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    costs = []
    base = {s.streams: s for s in summaries if not s.constrained}
    forwards = []
    for s in summaries:
        b = base[s.streams]
        ratio = s.paired_ratio
        if s.constrained and not s.fast_forward:
            costs.append(1 - ratio)
        if s.fast_forward:
            forwards.append(f"{s.forward_ratio:.2f}× at {s.streams} stream(s)")
        label = "none" if not s.constrained else "JSON Schema"
        label += " + fast-forward" if s.fast_forward else ""
        rows.append(
            f"| {s.streams} | {label} | {s.tokens_per_s:.1f} | "
            f"{s.aggregate_tokens_per_s:.1f} | {ratio:.3f}× | {s.ttft_p50_ms:,.0f} ms | "
            f"{s.ttft_p50_ms / b.ttft_p50_ms:.2f}× |"
        )
    worst = max(costs) if costs else 0.0
    verdict = (
        f"Mask (fill + unpack) p50 {percentile(masks, 0.5) * 1e6:.0f} µs, p99 "
        f"{percentile(masks, 0.99) * 1e6:.0f} µs over {len(masks)} masks. Largest decode cost "
        f"of the constraint: {worst * 100:.1f}% (target ≤ {TARGET_COST * 100:.0f}%: "
        f"{'met' if worst <= TARGET_COST else 'not met'}). Grammar fast-forward: constrained "
        f"decode {', '.join(forwards) or 'not measured'} the rate without it (paired)."
    )
    return "\n".join(rows), verdict


def steps_per_token(samples: Sequence[Sample]) -> str:
    """Decode steps per streamed token at one stream, constrained, without and with
    fast-forward: the model work it saves, whatever the machine's load."""
    cells = []
    for ff in (False, True):
        group = [s for s in samples if s.streams == 1 and s.constrained and s.fast_forward == ff]
        tokens = sum(s.tokens for s in group)
        if tokens:
            cells.append(f"{sum(s.steps for s in group) / tokens:.2f}")
    if len(cells) < 2:
        return ""
    return (
        f"Decode steps per constrained token at one stream: {cells[0]} without fast-forward, "
        f"{cells[1]} with it."
    )


def main(
    *, quick: bool, results_dir: Path, docs: Path | None, command: str, model: Path | None = None
) -> list[Summary]:
    """Run the benchmark, print its table, write `constrained.json` (and the docs section)."""
    settings = Settings.quick() if quick else Settings()
    model = find_model(model)
    load_before = os.getloadavg()[0]
    samples = anyio.run(run, model, settings)
    load = (load_before, os.getloadavg()[0])
    masks = mask_times(model, samples)
    summaries = summarize(samples)
    machine = report.Machine.current()
    text, verdict = table(summaries, masks)
    verdict = f"{verdict} {steps_per_token(samples)}".rstrip()
    print(text, verdict, sep="\n")
    path = report.write_json(
        results_dir / "constrained.json",
        {"machine": asdict(machine), "settings": asdict(settings), "command": command,
         "model": model.name, "load_average": load, "schema": SCHEMA,
         "mask_seconds": {"p50": percentile(masks, 0.5), "p99": percentile(masks, 0.99),
                          "count": len(masks)},
         "summaries": [asdict(s) for s in summaries],
         "samples": [{**asdict(s), "token_ids": len(s.token_ids)} for s in samples]},
    )  # fmt: skip
    print(f"constrained: results in {path}")
    if docs is not None:
        header = (
            f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores, Python "
            f"{machine.python}. Command: `{command}` — {model.name}, one in-process "
            f"`OnnxBackend`, {settings.rounds} rounds alternating unconstrained and JSON Schema "
            f"batches, greedy, up to {settings.max_tokens} tokens. Load average "
            f"{load[0]:.1f} before, {load[1]:.1f} after."
        )
        report.update_docs(docs, SECTION, f"{header}\n\n{text}\n\n{verdict}")
    return summaries


def cli(argv: Sequence[str] | None = None) -> None:
    run_standalone("constrained", __doc__, main, argv)
