"""Upstream proxy latency: what tokenwire + UpstreamBackend adds to each token.

An upstream tokenwire server streams tokens 5 ms apart; each token's text is the
CLOCK_MONOTONIC nanosecond at which its backend yielded it. One client reads the same stream
directly and through a proxy (tokenwire + UpstreamBackend, in its own process), in
alternating pairs, and takes each token's latency as arrival − stamp. The added latency of
token i is its proxy latency minus its direct latency in the same pair: the upstream's
timer jitter, which piles up over a stream, cancels out. Needs `tokenwire-upstream`
installed (`pip install -e plugins/tokenwire-upstream`).

Run alone: `python -m benchmarks.upstream [--quick]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio
import httpx

from benchmarks._shared import report
from benchmarks._shared.paths import REPO
from tokenwire import Event, Finish, GenerationRequest, TokenDelta, Usage, create_app

SECTION = "upstream-proxy-latency"
TARGET_P50_MS = 1.0
"""Added latency per token through the proxy, p50 (issue 5)."""
MODEL = "stamp"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Settings:
    tokens: int = 100
    delay: float = 0.005
    pairs: int = 40
    concurrency: int = 16

    @classmethod
    def quick(cls) -> Settings:
        return cls(tokens=20, pairs=4, concurrency=4)


class StampBackend:
    """The echo backend's pacing with a clock for text: each token is its emission time."""

    model_id = MODEL

    def __init__(self, *, tokens: int, delay: float) -> None:
        self.tokens, self.delay = tokens, delay

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        for _ in range(self.tokens):
            await anyio.sleep(self.delay)
            yield TokenDelta(f" {time.monotonic_ns()}")
        yield Finish("length", Usage(1, self.tokens))


@dataclass(frozen=True, slots=True)
class Stream:
    """One streamed response: request start and each token's (stamp, arrival), in ns."""

    started: int
    tokens: tuple[tuple[int, int], ...]

    def latencies_ms(self) -> list[float]:
        return [(arrival - stamp) / 1e6 for stamp, arrival in self.tokens]


@dataclass(frozen=True, slots=True)
class Cost:
    """CPU time per token of each server process in one scenario, in microseconds.

    Unlike wall latency this barely moves with machine load: on an idle machine the added
    latency per token is about the proxy's CPU per token plus one loopback hop.
    """

    scenario: str
    proxy_cpu_us_per_token: float
    upstream_cpu_us_per_token: float


@dataclass(frozen=True, slots=True)
class Row:
    """Percentiles (ms) of one group of token indices in one scenario."""

    scenario: str
    tokens: str
    direct_p50: float
    direct_p99: float
    proxy_p50: float
    proxy_p99: float
    added_p50: float
    added_p99: float
    samples: int


async def read_stream(client: httpx.AsyncClient, tokens: int) -> Stream:
    body = {
        "model": MODEL,
        "stream": True,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": "go"}],
    }
    started = time.monotonic_ns()
    seen: list[tuple[int, int]] = []
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            arrival = time.monotonic_ns()
            if line.startswith("data: {"):
                choices = json.loads(line[6:])["choices"]
                content = choices[0]["delta"].get("content") if choices else None
                if content:
                    seen.append((int(content), arrival))
    if len(seen) != tokens:
        raise RuntimeError(f"expected {tokens} tokens, got {len(seen)}")
    return Stream(started, tuple(seen))


async def measure(
    direct_url: str, proxy_url: str, settings: Settings, concurrency: int
) -> list[tuple[Stream, Stream]]:
    """`settings.pairs` pairs of (direct, proxy) streams, `concurrency` pairs at a time."""
    limits = httpx.Limits(max_connections=2 * concurrency)
    pairs: list[tuple[Stream, Stream]] = []
    async with (
        httpx.AsyncClient(base_url=direct_url, limits=limits, timeout=60) as direct,
        httpx.AsyncClient(base_url=proxy_url, limits=limits, timeout=60) as proxy,
    ):

        async def pair(index: int) -> None:
            # Alternate which goes first, so neither always meets a warmer upstream.
            first, second = (direct, proxy) if index % 2 == 0 else (proxy, direct)
            a = await read_stream(first, settings.tokens)
            b = await read_stream(second, settings.tokens)
            pairs.append((a, b) if first is direct else (b, a))

        await pair(0)  # warm-up: pooled connections, imports; not kept
        pairs.clear()
        for start in range(0, settings.pairs, concurrency):
            async with anyio.create_task_group() as group:
                for index in range(start, min(start + concurrency, settings.pairs)):
                    group.start_soon(pair, index)
    return pairs


def summarize(scenario: str, pairs: Sequence[tuple[Stream, Stream]]) -> list[Row]:
    groups = {
        "first": range(0, 1),
        "2–10": range(1, 10),
        "11+": range(10, 10**9),
        "all": range(10**9),
    }
    rows = []
    for label, indices in groups.items():
        direct, proxy, added = [], [], []
        for d, p in pairs:
            for i, (dl, pl) in enumerate(zip(d.latencies_ms(), p.latencies_ms(), strict=True)):
                if i in indices:
                    direct.append(dl)
                    proxy.append(pl)
                    added.append(pl - dl)
        if added:
            rows.append(Row(scenario, label, *_p(direct), *_p(proxy), *_p(added), len(added)))
    ttft = [(p.tokens[0][1] - p.started - (d.tokens[0][1] - d.started)) / 1e6 for d, p in pairs]
    rows.append(Row(scenario, "TTFT (from request)", 0, 0, 0, 0, *_p(ttft), len(ttft)))
    return rows


def _p(values: list[float]) -> tuple[float, float]:
    cuts = (
        statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    )
    return statistics.median(values), cuts[98]


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| scenario | tokens | direct p50 | direct p99 | proxy p50 | proxy p99 | "
        "**added p50** | added p99 | samples |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.tokens.startswith("TTFT"):
            lines.append(
                f"| {r.scenario} | {r.tokens} | | | | | **{r.added_p50:+.2f}** | "
                f"{r.added_p99:+.2f} | {r.samples} |"
            )
            continue
        lines.append(
            f"| {r.scenario} | {r.tokens} | {r.direct_p50:.2f} | {r.direct_p99:.2f} | "
            f"{r.proxy_p50:.2f} | {r.proxy_p99:.2f} | **{r.added_p50:+.2f}** | "
            f"{r.added_p99:+.2f} | {r.samples} |"
        )
    return "\n".join(lines)


def cost_table(costs: Sequence[Cost]) -> str:
    lines = [
        "| scenario | proxy CPU µs/token | upstream server CPU µs/token |",
        "|---|---:|---:|",
    ]
    for c in costs:
        lines.append(
            f"| {c.scenario} | {c.proxy_cpu_us_per_token:.0f} | {c.upstream_cpu_us_per_token:.0f} |"
        )
    return "\n".join(lines)


class Server:
    """One uvicorn child process (`--serve upstream|proxy`), stopped on exit."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path[1:]])}
        command = [sys.executable, "-m", "benchmarks.upstream", "--serve", *args]
        self.process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            self.process.kill()
            raise RuntimeError(f"server {args[0]} failed to start (exit {self.process.wait()})")
        self.url = f"http://127.0.0.1:{line.split()[1]}"

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (from /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve(role: str, upstream: str, settings: Settings, loop: str, http: str) -> None:
    import socket

    import uvicorn
    from tokenwire_upstream import UpstreamBackend

    if role == "upstream":
        app = create_app(StampBackend(tokens=settings.tokens, delay=settings.delay))
    else:
        app = create_app(UpstreamBackend(base_url=upstream, model=MODEL))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, loop=loop, http=http, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    started = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await started(sockets=sockets)
        print(f"READY {sock.getsockname()[1]}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])


def run(settings: Settings) -> tuple[list[Row], list[Cost]]:
    if importlib.util.find_spec("tokenwire_upstream") is None:
        raise RuntimeError("install the plugin first: pip install -e plugins/tokenwire-upstream")
    # What uvicorn's `auto` picks, named so the report can say it.
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    flags = ["--loop", loop, "--http", http,
             "--tokens", str(settings.tokens), "--delay", str(settings.delay)]  # fmt: skip
    upstream = Server("upstream", *flags)
    try:
        proxy = Server("proxy", "--upstream", upstream.url, *flags)
        try:
            rows: list[Row] = []
            costs: list[Cost] = []
            scenarios = (
                ("single", 1),
                (f"{settings.concurrency} pairs at once", settings.concurrency),
            )
            for scenario, concurrency in scenarios:
                before = proxy.cpu_seconds(), upstream.cpu_seconds()
                pairs = anyio.run(measure, upstream.url, proxy.url, settings, concurrency)
                # The warm-up pair streamed too: one more proxy stream, two more upstream ones.
                proxied = (len(pairs) + 1) * settings.tokens
                costs.append(
                    Cost(
                        scenario,
                        1e6 * (proxy.cpu_seconds() - before[0]) / proxied,
                        1e6 * (upstream.cpu_seconds() - before[1]) / (2 * proxied),
                    )
                )
                rows += summarize(scenario, pairs)
                print(f"upstream: {scenario} done ({len(pairs)} pairs)", flush=True)
        finally:
            proxy.stop()
    finally:
        upstream.stop()
    return rows, costs


def main(
    *, quick: bool, results_dir: Path, docs: Path | None, command: str
) -> tuple[list[Row], list[Cost]]:
    """Run the benchmark, print its table, write `upstream.json` (and the docs section)."""
    settings = Settings.quick() if quick else Settings()
    rows, costs = run(settings)
    machine = report.Machine.current()
    text = table(rows) + "\n\n" + cost_table(costs)
    single = next(r for r in rows if r.scenario == "single" and r.tokens == "all")
    verdict = "met" if single.added_p50 <= TARGET_P50_MS else "MISSED"
    summary = (
        f"Added latency per token, single stream: p50 {single.added_p50:+.3f} ms "
        f"(target ≤ {TARGET_P50_MS} ms: {verdict}), p99 {single.added_p99:+.3f} ms."
    )
    print(text, summary, sep="\n")
    path = report.write_json(
        results_dir / "upstream.json",
        {"machine": asdict(machine), "settings": asdict(settings), "command": command,
         "rows": [asdict(r) for r in rows], "costs": [asdict(c) for c in costs]},
    )  # fmt: skip
    print(f"upstream: results in {path}")
    if docs is not None:
        header = (
            f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores, Python "
            f"{machine.python}. Command: `{command}` — {settings.tokens} tokens "
            f"{settings.delay * 1000:g} ms apart, {settings.pairs} direct/proxy pairs per "
            "scenario. Milliseconds, token emission to arrival at the client."
        )
        report.update_docs(docs, SECTION, f"{header}\n\n{text}\n\n{summary}")
    return rows, costs


def cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.upstream", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--serve", choices=("upstream", "proxy"), help=argparse.SUPPRESS)
    parser.add_argument("--upstream", default="", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--http", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, default=Settings().tokens, help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=Settings().delay, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        settings = Settings(tokens=args.tokens, delay=args.delay)
        serve(args.serve, args.upstream, settings, args.loop, args.http)
        return
    command = " ".join(["python", "-m", "benchmarks.upstream", *sys.argv[1:]])
    main(quick=args.quick, results_dir=args.results_dir, docs=None, command=command)
