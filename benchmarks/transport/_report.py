"""The transport ceiling's figures: a printed table and its docs/benchmarks.md block."""

from __future__ import annotations

from benchmarks.transport._results import TransportResults

TRANSPORT_SECTION = "transport-ceiling"
_LABELS = {"tokenwire": "tokenwire", "raw": "(a) raw ASGI", "sse-starlette": "(b) sse-starlette"}
_SCENARIOS = {"single": "single stream", "concurrent": "concurrent"}


def _scenario_label(results: TransportResults, scenario: str) -> str:
    if scenario == "concurrent":
        return f"{results.settings.concurrency} concurrent"
    return _SCENARIOS[scenario]


def table(results: TransportResults) -> str:
    """A plain-text table of the medians and the ratios."""
    lines = [
        f"{'scenario':<14} {'server':<18} {'tokens/s':>10} {'µs/token':>9} "
        f"{'server CPU µs/token':>20} {'client CPU':>10}"
    ]
    for summary in results.summaries:
        lines.append(
            f"{_scenario_label(results, summary.scenario):<14} {_LABELS[summary.server]:<18} "
            f"{summary.tokens_per_second:>10,.0f} {summary.microseconds_per_token:>9.1f} "
            f"{summary.server_cpu_microseconds_per_token:>20.1f} {summary.client_cpu_share:>10.0%}"
        )
    for c in results.comparisons:
        lines.append(
            f"{_scenario_label(results, c.scenario)}: tokenwire = {c.vs_raw:.2f}× raw "
            f"(target ≥ 0.6: {'met' if c.meets_raw_target else 'MISSED'}), "
            f"{c.vs_sse_starlette:.2f}× sse-starlette "
            f"(target ≥ 1.5: {'met' if c.meets_sse_starlette_target else 'MISSED'}); "
            f"overhead {c.overhead_microseconds_per_token:+.1f} µs/token wall, "
            f"{c.server_cpu_overhead_microseconds_per_token:+.1f} µs/token server CPU; "
            f"per server-CPU-second {c.cpu_vs_raw:.2f}× raw, {c.cpu_vs_sse_starlette:.2f}× sse-starlette"
        )
    lines.append(
        f"client alone: {results.client.parse_tokens_per_second:,.0f} tokens/s "
        f"({results.client.bytes_per_token:.0f} bytes/token)"
    )
    return "\n".join(lines)


def markdown(results: TransportResults) -> str:
    """The generated part of the docs section: setup, figures and ratios."""
    machine, settings = results.machine, results.settings
    rows = [
        "| scenario | server | tokens/s | µs/token | server CPU µs/token | client CPU |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in results.summaries:
        rows.append(
            f"| {_scenario_label(results, s.scenario)} | {_LABELS[s.server]} | "
            f"{s.tokens_per_second:,.0f} | {s.microseconds_per_token:.1f} | "
            f"{s.server_cpu_microseconds_per_token:.1f} | {s.client_cpu_share:.0%} |"
        )
    ratios = [
        "| scenario | tokenwire ÷ (a) | target | tokenwire ÷ (b) | target | "
        "overhead vs (a), wall | overhead vs (a), server CPU | CPU-efficiency ÷ (a) | "
        "CPU-efficiency ÷ (b) |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for c in results.comparisons:
        ratios.append(
            f"| {_scenario_label(results, c.scenario)} | {c.vs_raw:.2f}× | ≥ 0.6× "
            f"{'met' if c.meets_raw_target else '**missed**'} | {c.vs_sse_starlette:.2f}× | ≥ 1.5× "
            f"{'met' if c.meets_sse_starlette_target else '**missed**'} | "
            f"{c.overhead_microseconds_per_token:+.1f} µs/token | "
            f"{c.server_cpu_overhead_microseconds_per_token:+.1f} µs/token | "
            f"{c.cpu_vs_raw:.2f}× | {c.cpu_vs_sse_starlette:.2f}× |"
        )
    return "\n".join(
        [
            f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores, "
            f"Python {machine.python} ({machine.platform}); uvicorn "
            f"`loop={results.server_settings.loop}`, `http={results.server_settings.http}`, "
            "one worker per server.",
            "",
            f"Command: `{results.command}` — {settings.words} tokens per request; single stream "
            f"= {settings.single_requests} sequential requests, concurrent = "
            f"{settings.concurrency} streams × {settings.requests_per_stream} sequential "
            f"request{'s' if settings.requests_per_stream != 1 else ''} each; "
            f"median of {settings.rounds} interleaved rounds.",
            "",
            *rows,
            "",
            *ratios,
            "",
            f"The client alone parses {results.client.parse_tokens_per_second:,.0f} tokens/s "
            f"({results.client.bytes_per_token:.0f} bytes per token), replaying the raw "
            "emitter's recorded bytes in memory.",
        ]
    )
