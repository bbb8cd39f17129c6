"""Failover time: the owner of a stream is SIGKILLed, and the client reconnects on another
replica; the time is kill → the first payload the adopting replica produced (the first one
the dead owner never stored).

Each run: two `tokenwire serve --backend echo` replicas sharing a redis-server (the owner is
started fresh each run, since it dies), a stream of `words` tokens at `delay` seconds a token
on the owner, read for a few events; then SIGKILL, the stored payload count read from Redis,
and `GET /v1/streams/{id}` with `Last-Event-ID` on the other replica. The time is made of the
lease running out (`--resume-grace 30` gives a 4 s lease, renewed every second), the reader
noticing (its blocking read wakes every second), and the re-prefill.

Runs after the stream store benchmark (`python -m benchmarks --only stream_store`), or alone:
`python -m benchmarks.stream_store.failover [--quick] [--update-docs]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from benchmarks._shared import report
from benchmarks._shared.paths import REPO
from benchmarks._shared.serve import ServeProcess
from benchmarks.stream_store._processes import RedisProcess, echo_serve

SECTION = "stream-store-failover"


@dataclass(frozen=True, slots=True)
class Settings:
    runs: int = 7
    words: int = 400
    delay: float = 0.01
    grace: float = 30.0

    @classmethod
    def quick(cls) -> Settings:
        return cls(runs=2)


@dataclass(frozen=True, slots=True)
class Failover:
    samples: int
    p50_s: float
    min_s: float
    max_s: float
    complete: bool  # every run's ids were contiguous and its text whole


def _stored(redis_url: str, request_id: str) -> int:
    """Payloads the dead owner stored (the number of the first new one)."""
    from redis import Redis

    from tokenwire.stores.redis_entries import count

    client = Redis.from_url(redis_url)
    try:
        last = client.xrevrange(f"tokenwire:{{{request_id}}}:stream", count=1)
    finally:
        client.close()
    if not last:
        return 0
    entry_id, fields = last[0]
    return int(entry_id.split(b"-")[0]) - 1 + count(fields)


def one_run(
    redis_url: str, survivor: ServeProcess, settings: Settings, n: int
) -> tuple[float, bool]:
    extra = ["--backend-option", f"delay={settings.delay}", "--resume-grace", str(settings.grace)]
    owner = echo_serve(redis_url, extra)
    prompt = " ".join(f"w{i}" for i in range(settings.words))
    body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    request_id = f"failover-{n}-{time.monotonic_ns()}"
    seen: list[int] = []
    text = ""
    try:
        with httpx.Client(timeout=httpx.Timeout(60.0)) as client:
            with client.stream(
                "POST", owner.url + "/v1/chat/completions", json=body,
                headers={"x-request-id": request_id},
            ) as response:  # fmt: skip
                for seq, data in _sse(response.iter_lines()):
                    seen.append(seq)
                    text += _content(data)
                    if len(seen) >= 20:
                        killed = time.perf_counter()
                        owner.process.kill()
                        break
            stored = _stored(redis_url, request_id)
            first_new = None
            headers = {"last-event-id": f"{request_id}:{seen[-1]}"}
            with client.stream(
                "GET", f"{survivor.url}/v1/streams/{request_id}", headers=headers
            ) as response:
                for seq, data in _sse(response.iter_lines()):
                    if first_new is None and seq >= stored:
                        first_new = time.perf_counter() - killed
                    seen.append(seq)
                    text += _content(data)
    finally:
        owner.process.kill()
        owner.process.wait()
    complete = seen == list(range(len(seen))) and text == prompt
    assert first_new is not None, "the stream was not continued"
    return first_new, complete


def _sse(lines: Iterator[str]) -> Iterator[tuple[int, str]]:
    """(payload number, data) of each SSE event with an id, as they arrive."""
    seq, data = None, None
    for line in lines:
        if line.startswith("id:"):
            seq = int(line.split(":")[-1])
        elif line.startswith("data:"):
            data = line[5:].strip()
        elif not line and seq is not None and data is not None:
            yield seq, data
            seq, data = None, None


def _content(data: str) -> str:
    if not data.startswith("{"):
        return ""
    return "".join(c["delta"].get("content") or "" for c in json.loads(data)["choices"])


def measure(redis_url: str, settings: Settings) -> Failover:
    extra = ["--backend-option", f"delay={settings.delay}", "--resume-grace", str(settings.grace)]
    survivor = echo_serve(redis_url, extra)
    try:
        results = [one_run(redis_url, survivor, settings, n) for n in range(settings.runs)]
    finally:
        survivor.stop()
    times = [t for t, _ in results]
    return Failover(
        len(times), statistics.median(times), min(times), max(times), all(c for _, c in results)
    )


def main(*, quick: bool, results_dir: Path, docs: Path | None, command: str) -> Failover:
    settings = Settings.quick() if quick else Settings()
    load_before = os.getloadavg()
    redis = RedisProcess()
    try:
        failover = measure(redis.url, settings)
    finally:
        redis.stop()
    load_after = os.getloadavg()
    machine = report.Machine.current()
    text = "\n".join(
        [
            "| failover (owner SIGKILLed) | runs | p50 | min | max | whole streams |",
            "|---|---:|---:|---:|---:|---|",
            f"| kill → first new payload at the client | {failover.samples} | "
            f"{failover.p50_s:.2f} s | {failover.min_s:.2f} s | {failover.max_s:.2f} s | "
            f"{'yes' if failover.complete else 'NO'} |",
        ]
    )
    print(text)
    path = report.write_json(
        results_dir / "stream_store_failover.json",
        {"machine": asdict(machine), "settings": asdict(settings), "command": command,
         "load_average": {"before": load_before, "after": load_after},
         "failover": asdict(failover)},
    )  # fmt: skip
    print(f"stream-store failover: results in {path}")
    if docs is not None:
        header = (
            f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores (shared with "
            f"other work), Python {machine.python}. Command: `{command}` — echo backend at "
            f"{settings.delay * 1000:.0f} ms a token, `--resume-grace {settings.grace:g}` "
            f"(a 4 s lease), {settings.words}-token streams killed after 20 events, "
            f"replicas and redis-server on the same machine. Load average (1/5/15 min) "
            f"{'/'.join(f'{x:.1f}' for x in load_before)} before, "
            f"{'/'.join(f'{x:.1f}' for x in load_after)} after."
        )
        report.update_docs(docs, SECTION, f"{header}\n\n{text}")
    return failover


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stream_store.failover", description=__doc__
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    main(
        quick=args.quick,
        results_dir=args.results_dir,
        docs=REPO / "docs" / "benchmarks.md" if args.update_docs else None,
        command="python -m benchmarks.stream_store.failover" + (" --quick" if args.quick else ""),
    )
    sys.exit(0)


if __name__ == "__main__":
    cli()
