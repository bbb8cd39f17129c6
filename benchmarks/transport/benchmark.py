"""The transport ceiling: tokens/s through the full stack against a raw floor and sse-starlette.

Every server streams the same 2,000-token OpenAI chat stream (echo backend, no delay) from its
own uvicorn process; one client process reads them in interleaved rounds, so machine noise
hits all three alike. Medians are reported; see docs/benchmarks.md for how to read them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import anyio

from benchmarks._shared import report
from benchmarks.transport._apps import SERVERS
from benchmarks.transport._client import SSEConnection, StreamCount, build_request
from benchmarks.transport._payloads import prompt_text, request_body
from benchmarks.transport._report import TRANSPORT_SECTION, markdown, table
from benchmarks.transport._results import (
    TARGETS,
    ClientCeiling,
    Comparison,
    Sample,
    Settings,
    Summary,
    TransportResults,
)
from benchmarks.transport._servers import ServerProcess, ServerSettings

T = TypeVar("T")
SCENARIOS = ("single", "concurrent")


async def _stream_many(connection: SSEConnection, requests: int, expected: int) -> int:
    tokens = 0
    for _ in range(requests):
        count = await connection.stream_chat()
        if count.tokens != expected or not count.done:
            raise RuntimeError(f"expected {expected} tokens and [DONE], got {count}")
        tokens += count.tokens
    return tokens


async def _timed_streams(
    port: int, settings: Settings, streams: int, requests: int
) -> tuple[int, float]:
    body = request_body(settings.words)
    opened = [await SSEConnection.open(port, body) for _ in range(streams)]
    totals: list[int] = []

    async def run(connection: SSEConnection) -> None:
        totals.append(await _stream_many(connection, requests, settings.words))

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for connection, _ in opened:
            tg.start_soon(run, connection)
    elapsed = time.perf_counter() - started
    for _, socket_stream in opened:
        await socket_stream.aclose()
    return sum(totals), elapsed


async def _verify(port: int, settings: Settings) -> StreamCount:
    connection, socket_stream = await SSEConnection.open(port, request_body(settings.words))
    async with socket_stream:
        return await connection.stream_chat(verify=True)


def _run_client(function: Callable[..., Awaitable[T]], *args: object) -> T:
    # uvloop for the client too when it is installed: the client must not be the bottleneck.
    options = {"use_uvloop": ServerSettings.fastest_installed().loop == "uvloop"}
    return anyio.run(function, *args, backend_options=options)


def measure(server: ServerProcess, scenario: str, round_: int, settings: Settings) -> Sample:
    if scenario == "single":
        streams, requests = 1, settings.single_requests
    else:
        streams, requests = settings.concurrency, settings.requests_per_stream
    server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
    tokens, seconds = _run_client(_timed_streams, server.port, settings, streams, requests)
    return Sample(
        server.name,
        scenario,
        round_,
        tokens,
        seconds,
        server.cpu_seconds() - server_cpu,
        time.process_time() - client_cpu,
    )


def client_ceiling(port: int, settings: Settings) -> ClientCeiling:
    """Record one response from `port` as received, then time the client parsing it alone."""
    recorded: list[bytes] = []

    async def record() -> None:
        socket_stream = await anyio.connect_tcp("127.0.0.1", port)

        async def receive() -> bytes:
            data = await socket_stream.receive(256 * 1024)
            recorded.append(data)
            return data

        request = build_request(port, request_body(settings.words))
        async with socket_stream:
            await SSEConnection(receive, socket_stream.send, request).stream_chat()

    async def replay() -> float:
        async def send(data: bytes) -> None:
            return None

        started = time.perf_counter()
        for _ in range(settings.ceiling_repeats):
            receive = _replay(recorded)
            count = await SSEConnection(receive, send, b"").stream_chat()
            assert count.tokens == settings.words
        return time.perf_counter() - started

    _run_client(record)
    seconds = _run_client(replay)
    size = sum(map(len, recorded))
    return ClientCeiling(settings.words * settings.ceiling_repeats / seconds, size / settings.words)


def _replay(chunks: Sequence[bytes]) -> Callable[[], Awaitable[bytes]]:
    pending = iter(chunks)

    async def receive() -> bytes:
        return next(pending)

    return receive


def summarize(samples: Sequence[Sample]) -> list[Summary]:
    summaries = []
    for scenario in SCENARIOS:
        for server in SERVERS:
            mine = [s for s in samples if s.server == server and s.scenario == scenario]
            rate = statistics.median(s.tokens_per_second for s in mine)
            summaries.append(
                Summary(
                    server,
                    scenario,
                    rate,
                    1e6 / rate,
                    statistics.median(1e6 * s.server_cpu_seconds / s.tokens for s in mine),
                    statistics.median(s.client_cpu_seconds / s.seconds for s in mine),
                )
            )
    return summaries


def compare(summaries: Sequence[Summary]) -> list[Comparison]:
    comparisons = []
    for scenario in SCENARIOS:
        by_server = {s.server: s for s in summaries if s.scenario == scenario}
        ours, raw, sse = by_server["tokenwire"], by_server["raw"], by_server["sse-starlette"]
        vs_raw = ours.tokens_per_second / raw.tokens_per_second
        vs_sse = ours.tokens_per_second / sse.tokens_per_second
        comparisons.append(
            Comparison(
                scenario,
                vs_raw,
                vs_sse,
                ours.microseconds_per_token - raw.microseconds_per_token,
                ours.server_cpu_microseconds_per_token - raw.server_cpu_microseconds_per_token,
                raw.server_cpu_microseconds_per_token / ours.server_cpu_microseconds_per_token,
                sse.server_cpu_microseconds_per_token / ours.server_cpu_microseconds_per_token,
                vs_raw >= TARGETS["raw"],
                vs_sse >= TARGETS["sse-starlette"],
            )
        )
    return comparisons


def run(settings: Settings, *, command: str, log: bool = True) -> TransportResults:
    """Start the three servers, verify each, then measure them in interleaved rounds."""
    server_settings = ServerSettings.fastest_installed()
    say = print if log else (lambda *args, **kwargs: None)
    say(
        f"transport: uvicorn loop={server_settings.loop} http={server_settings.http}, 1 worker each"
    )
    samples: list[Sample] = []
    servers = [ServerProcess(n, words=settings.words, settings=server_settings) for n in SERVERS]
    try:
        for server in servers:
            server.__enter__()
        for server in servers:
            count = _run_client(_verify, server.port, settings)
            if count.text != prompt_text(settings.words) or not count.done:
                raise RuntimeError(f"{server.name} streamed the wrong text: {count}")
            # One warm-up pass of each scenario, untimed.
            measure(server, "single", -1, replace(settings, single_requests=1))
        ceiling = client_ceiling(servers[1].port, settings)
        say(f"transport: client alone parses {ceiling.parse_tokens_per_second:,.0f} tokens/s")
        for round_ in range(settings.rounds):
            # Rotate the order each round so no server always runs first or last.
            order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
            for server in order:
                for scenario in SCENARIOS:
                    sample = measure(server, scenario, round_, settings)
                    samples.append(sample)
                    say(
                        f"  round {round_ + 1}/{settings.rounds} {server.name:>13} {scenario:>10}: "
                        f"{sample.tokens_per_second:10,.0f} tokens/s"
                    )
    finally:
        for server in servers:
            server.stop()
    summaries = summarize(samples)
    return TransportResults(
        settings,
        server_settings,
        report.Machine.current(),
        command,
        ceiling,
        samples,
        summaries,
        compare(summaries),
    )


def main(*, quick: bool, results_dir: Path, docs: Path | None, command: str) -> TransportResults:
    """Run the benchmark, print its table, write `transport.json` (and the docs section)."""
    settings = Settings.quick() if quick else Settings()
    results = run(settings, command=command)
    print(table(results))
    path = report.write_json(results_dir / "transport.json", results.to_json())
    print(f"transport: results in {path}")
    if docs is not None:
        report.update_docs(docs, TRANSPORT_SECTION, markdown(results))
        print(f"transport: figures written to {docs}")
    return results
