"""Prompt cache: time to first token with a long shared system prompt, cache hit vs miss.

One `tokenwire serve` process runs the prepared SmolLM2 int8 with `--middleware
prompt_cache`. Every question goes out twice, in alternating pairs, so machine noise hits
both alike: once under the shared ~1,500-token system prompt (cached after a warm-up: a
hit) and once under the same prompt with a distinct first line (nothing reusable: a miss,
prefilled whole). The client streams over SSE and takes the time to the first content delta;
the final usage chunk tells how many prompt tokens were reused.

Run alone: `python -m benchmarks.prompt_cache [--quick] [--update-docs] [--model DIR]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx

from benchmarks._shared import report
from benchmarks._shared.paths import REPO
from benchmarks._shared.prepared_model import MODEL_NAME, find_model
from benchmarks._shared.serve import ServeProcess

SECTION = "prompt-cache"
TARGET_RATIO = 10.0
"""TTFT p50 on a miss over TTFT p50 on a hit (issue 4)."""

_RULES = (
    "Orders placed before noon ship the same day from the warehouse in Lyon.",
    "Refunds go back to the original payment method within five business days.",
    "Customers may return unused items within thirty days of delivery.",
    "Gift cards never expire and can be combined with other promotions.",
    "Support answers in the customer's language and signs with a first name only.",
    "Never promise a delivery date that the carrier has not confirmed.",
    "Escalate any report of a damaged parcel to the claims team with photos attached.",
)
QUESTIONS = (
    "How long do refunds take?",
    "Can I combine two gift cards?",
    "When does my order ship?",
    "What if my parcel arrived damaged?",
    "Can I return shoes I wore once?",
    "Do gift cards expire?",
    "Which warehouse ships my order?",
    "Will you tell me the delivery date?",
    "How do I report a broken item?",
    "Can support answer in French?",
    "Is there a fee for returns?",
    "Who signs the support emails?",
)


@dataclass(frozen=True, slots=True)
class Settings:
    """How much work one run does."""

    rules: int = 80
    """Sentences in the system prompt: 80 make about 1,500 tokens."""
    pairs: int = 12
    max_tokens: int = 8

    @classmethod
    def quick(cls) -> Settings:
        """A smoke run: a shorter prompt and two pairs; its numbers are not worth comparing."""
        return cls(rules=20, pairs=2)


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: hit or miss, its time to first token and what usage reported."""

    kind: str
    question: int
    ttft_ms: float
    prompt_tokens: int
    cached_tokens: int


@dataclass(frozen=True, slots=True)
class Summary:
    kind: str
    count: int
    ttft_p50_ms: float
    ttft_p90_ms: float
    prompt_tokens: int
    cached_tokens: int


def system_prompt(rules: int, first_line: str = "You are the support assistant of Acme.") -> str:
    body = " ".join(f"Rule {i + 1}: {_RULES[i % len(_RULES)]}" for i in range(rules))
    return f"{first_line} Follow these rules. {body}"


def ask(client: httpx.Client, system: str, question: str, settings: Settings) -> Sample:
    body = {
        "model": MODEL_NAME,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": settings.max_tokens,
        "temperature": 0,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
    }
    started = time.perf_counter()
    first: float | None = None
    usage = None
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any(c["delta"].get("content") for c in chunk["choices"]):
                first = time.perf_counter()
            usage = chunk.get("usage") or usage
    if first is None or usage is None:
        raise RuntimeError("the stream carried no content or no usage")
    cached = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    return Sample("", 0, (first - started) * 1000, usage["prompt_tokens"], cached)


def run(model: Path, settings: Settings) -> list[Sample]:
    shared = system_prompt(settings.rules)
    # The CLI names middlewares without options: the defaults (1 GiB, 16-token blocks).
    server = ServeProcess.onnx(model, ["prompt_cache"])
    samples: list[Sample] = []
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=600) as client:
            ask(client, shared, "Hello!", settings)  # warm-up: fills the cache
            for index in range(settings.pairs):
                question = QUESTIONS[index % len(QUESTIONS)]
                # A distinct first line changes the first block: no prefix can be reused.
                distinct = system_prompt(settings.rules, f"You are support assistant {index}.")
                for kind, system in (("miss", distinct), ("hit", shared)):
                    sample = ask(client, system, question, settings)
                    samples.append(replace(sample, kind=kind, question=index))
                print(f"prompt-cache: pair {index + 1}/{settings.pairs} done", flush=True)
    finally:
        server.stop()
    return samples


def summarize(samples: Sequence[Sample]) -> list[Summary]:
    summaries = []
    for kind in ("miss", "hit"):
        ttfts = sorted(s.ttft_ms for s in samples if s.kind == kind)
        mine = [s for s in samples if s.kind == kind]
        summaries.append(
            Summary(
                kind,
                len(ttfts),
                statistics.median(ttfts),
                ttfts[min(len(ttfts) - 1, round(0.9 * (len(ttfts) - 1)))],
                round(statistics.median(s.prompt_tokens for s in mine)),
                round(statistics.median(s.cached_tokens for s in mine)),
            )
        )
    return summaries


def table(summaries: Sequence[Summary]) -> str:
    rows = [
        "| request | n | TTFT p50 | TTFT p90 | prompt tokens | reused (cached) tokens |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        rows.append(
            f"| cache {s.kind} | {s.count} | {s.ttft_p50_ms:,.0f} ms | {s.ttft_p90_ms:,.0f} ms | "
            f"{s.prompt_tokens:,} | {s.cached_tokens:,} |"
        )
    return "\n".join(rows)


def verdict(summaries: Sequence[Summary]) -> str:
    miss, hit = summaries
    ratio = miss.ttft_p50_ms / hit.ttft_p50_ms
    met = "met" if ratio >= TARGET_RATIO else "**missed**"
    return f"TTFT p50 miss ÷ hit: {ratio:.1f}× (target ≥ {TARGET_RATIO:g}×: {met})."


def main(
    *, quick: bool, results_dir: Path, docs: Path | None, command: str, model: Path | None = None
) -> list[Summary]:
    """Run the benchmark, print its table, write `prompt_cache.json` (and the docs section)."""
    settings = Settings.quick() if quick else Settings()
    model = find_model(model)
    load_before = os.getloadavg()[0]
    samples = run(model, settings)
    load = (load_before, os.getloadavg()[0])
    summaries = summarize(samples)
    machine = report.Machine.current()
    text, summary = table(summaries), verdict(summaries)
    print(text, summary, sep="\n")
    path = report.write_json(
        results_dir / "prompt_cache.json",
        {"machine": asdict(machine), "settings": asdict(settings), "command": command,
         "model": model.name, "load_average": load,
         "summaries": [asdict(s) for s in summaries],
         "samples": [asdict(s) for s in samples]},
    )  # fmt: skip
    print(f"prompt-cache: results in {path}")
    if docs is not None:
        header = (
            f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores, Python "
            f"{machine.python}. Command: `{command}` — {model.name}, one `tokenwire serve "
            f"--middleware prompt_cache` process (defaults: 1 GiB, 16-token blocks), "
            f"{settings.pairs} miss/hit pairs of short questions, {settings.max_tokens} tokens "
            "each, streamed over SSE; TTFT is request sent to first content delta at the client. "
            f"Load average {load[0]:.1f} before, {load[1]:.1f} after."
        )
        report.update_docs(docs, SECTION, f"{header}\n\n{text}\n\n{summary}")
    return summaries


def cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prompt_cache", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--model", type=Path, help="a prepared model directory")
    args = parser.parse_args(argv)
    command = " ".join(["python", "-m", "benchmarks.prompt_cache", *sys.argv[1:]])
    docs = REPO / "docs" / "benchmarks.md" if args.update_docs else None
    main(
        quick=args.quick,
        results_dir=args.results_dir,
        docs=docs,
        command=command,
        model=args.model,
    )
