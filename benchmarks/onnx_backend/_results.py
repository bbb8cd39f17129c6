"""What the ONNX benchmark measured: samples, medians, ratios against the targets (issue 8)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks._shared import report
from benchmarks._shared.bandwidth import WeightBytes
from benchmarks.onnx_backend._scenarios import GapRun, Run, System, percentile
from benchmarks.onnx_backend._settings import Settings

TARGETS: dict[str, float] = {
    "bare": 0.95,
    "optimum": 2.0,
    "genai": 1.5,
    "llamacpp": 1.5,
}
"""tokenwire int8 single-stream decode tokens/s over each baseline's, at least."""
SCALING_TARGET = 3.0
"""Aggregate tokens/s at 8 streams over 1 stream, at least."""
GAP_TARGET_MS = 100.0
"""Largest inter-token gap of running streams while long prompts arrive, at most."""


@dataclass(frozen=True, slots=True)
class SingleSample:
    system: str
    round: int
    ttft_ms: float
    decode_tokens_per_second: float
    end_to_end_tokens_per_second: float
    """Tokens over the time from the request to the last token (TTFT included)."""
    tokens: int
    cpu_ms_per_token: float
    """The system's process CPU time (all threads) over the tokens of the run."""
    text: str

    @classmethod
    def of(cls, system: System, round: int, run: Run) -> SingleSample:
        return cls(system.name, round, run.ttft * 1e3, run.decode_tokens_per_second,
                   run.tokens / run.seconds, run.tokens, run.cpu_seconds * 1e3 / run.tokens,
                   run.text)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SystemSummary:
    system: str
    label: str
    precision: str
    decode_tokens_per_second: float
    end_to_end_tokens_per_second: float
    ttft_ms: float
    tokens: int
    cpu_ms_per_token: float
    rounds: int
    peak_rss_mb: float
    text: str
    """What it generated in the first round: greedy runs of one model should agree."""


def summarize_single(
    samples: Sequence[SingleSample],
    systems: Sequence[tuple[str, str, str]],
    peaks: Mapping[str, int],
) -> list[SystemSummary]:
    rows = []
    for name, label, precision in systems:
        mine = [s for s in samples if s.system == name]
        rows.append(
            SystemSummary(
                name, label, precision,
                statistics.median(s.decode_tokens_per_second for s in mine),
                statistics.median(s.end_to_end_tokens_per_second for s in mine),
                statistics.median(s.ttft_ms for s in mine),
                int(statistics.median(s.tokens for s in mine)),
                statistics.median(s.cpu_ms_per_token for s in mine),
                len(mine),
                peaks.get(name, 0) / 2**20,
                mine[0].text,
            )
        )  # fmt: skip
    return rows


@dataclass(frozen=True, slots=True)
class Comparison:
    """tokenwire int8 against one baseline, single stream."""

    baseline: str
    label: str
    ratio: float
    """Median tokenwire decode tokens/s over the baseline's median."""
    paired_ratio: float
    """Median over rounds of the per-round ratio (each pair measured seconds apart)."""
    cpu_ratio: float
    """The baseline's CPU ms per token over tokenwire's: work per token, the figure a
    shared machine disturbs least (spinning thread pools count as work)."""
    target: float
    met: bool


def _target_key(name: str) -> str | None:
    for key in TARGETS:
        if name.startswith(key):
            return key
    return None


def compare(samples: Sequence[SingleSample], single: Sequence[SystemSummary]) -> list[Comparison]:
    ours = next((s for s in single if s.system == "tokenwire-int8"), None)
    if ours is None:
        return []
    rows = []
    for other in single:
        key = _target_key(other.system)
        if key is None or (key == "bare" and other.precision != "int8"):
            continue
        by_round = {s.round: s.decode_tokens_per_second for s in samples if s.system == ours.system}
        paired = [
            by_round[s.round] / s.decode_tokens_per_second
            for s in samples
            if s.system == other.system and s.round in by_round
        ]
        ratio = ours.decode_tokens_per_second / other.decode_tokens_per_second
        cpu = other.cpu_ms_per_token / ours.cpu_ms_per_token
        rows.append(Comparison(other.system, other.label, ratio, statistics.median(paired),
                               cpu, TARGETS[key], ratio >= TARGETS[key]))  # fmt: skip
    return rows


@dataclass(frozen=True, slots=True)
class ConcurrencySummary:
    streams: int
    aggregate_tokens_per_second: float
    per_stream_decode_tokens_per_second: float
    bare_batch_tokens_per_second: float
    """The bare loop decoding the same number of copies as one batch (no HTTP, no detok)."""
    peak_rss_mb: float
    rounds: int

    @classmethod
    def of(cls, streams: int, runs: Sequence[tuple[float, float, float, int]]) -> ConcurrencySummary:
        return cls(
            streams,
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
            statistics.median(r[2] for r in runs),
            max(r[3] for r in runs) / 2**20,
            len(runs),
        )


@dataclass(frozen=True, slots=True)
class TtftSummary:
    prompt: str
    prompt_tokens: int
    load_streams: int
    samples: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class GapSummary:
    prefill_budget_ms: float
    """The server's prefill budget; 0 is off (whole `prefill_chunk`s)."""
    running_streams: int
    long_prompts: int
    quiet_max_ms: float
    quiet_p99_ms: float
    busy_max_ms: float
    busy_p99_ms: float
    busy_p50_ms: float
    long_ttft_p50_ms: float
    timeline: list[tuple[float, float]]
    arrivals: list[float]

    @classmethod
    def of(cls, budget_ms: float, running: int, run: GapRun) -> GapSummary:
        def ms(values: Sequence[float], q: float) -> float:
            return percentile(values, q) * 1e3

        return cls(
            budget_ms, running, len(run.long_ttfts),
            ms(run.quiet_gaps, 100), ms(run.quiet_gaps, 99),
            ms(run.busy_gaps, 100), ms(run.busy_gaps, 99), ms(run.busy_gaps, 50),
            ms(run.long_ttfts, 50), run.timeline, run.arrivals,
        )  # fmt: skip

    @property
    def met(self) -> bool:
        return self.busy_max_ms <= GAP_TARGET_MS


@dataclass(frozen=True, slots=True)
class PrecisionSummary:
    precision: str
    top1_agreement: float | None
    mean_kl: float | None
    file_mb: float
    weight_mb_per_token: float
    tokenwire_decode_tokens_per_second: float
    bare_decode_tokens_per_second: float

    @classmethod
    def of(cls, precision: str, quality: Mapping[str, Any] | None, weights: WeightBytes,
           single: Sequence[SystemSummary]) -> PrecisionSummary:  # fmt: skip
        def rate(name: str) -> float:
            row = next((s for s in single if s.system == name), None)
            return row.decode_tokens_per_second if row else float("nan")

        quality = quality or {}
        return cls(
            precision, quality.get("top1_agreement"), quality.get("mean_kl"),
            weights.file_bytes / 1e6, weights.per_token_bytes / 1e6,
            rate(f"tokenwire-{precision}"), rate(f"bare-{precision}"),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class BoundRow:
    precision: str
    bound_tokens_per_second: float
    tokenwire_fraction: float
    bare_fraction: float


@dataclass(frozen=True, slots=True)
class BandwidthBound:
    read_gb_per_second: float
    """The best of the measurements (before and after the run)."""
    measurements_gb_per_second: list[float]
    rows: list[BoundRow]

    @classmethod
    def of(cls, best: float, all_: Sequence[float], precisions: Sequence[PrecisionSummary],
           single: Sequence[SystemSummary]) -> BandwidthBound:  # fmt: skip
        rows = []
        for p in precisions:
            bound = best / (p.weight_mb_per_token * 1e6)
            rows.append(BoundRow(p.precision, bound, p.tokenwire_decode_tokens_per_second / bound,
                                 p.bare_decode_tokens_per_second / bound))  # fmt: skip
        return cls(best / 1e9, [b / 1e9 for b in all_], rows)


@dataclass(frozen=True, slots=True)
class SpinSummary:
    """tokenwire int8 with `allow_spinning` on (the default) and off."""

    streams: int
    spinning_tokens_per_second: float
    no_spin_tokens_per_second: float
    spinning_cpu_ms_per_token: float
    no_spin_cpu_ms_per_token: float
    rounds: int

    @classmethod
    def of(cls, streams: int, spinning: Sequence[tuple[float, float]],
           quiet: Sequence[tuple[float, float]]) -> SpinSummary:  # fmt: skip
        return cls(
            streams,
            statistics.median(r[0] for r in spinning),
            statistics.median(r[0] for r in quiet),
            statistics.median(r[1] for r in spinning),
            statistics.median(r[1] for r in quiet),
            len(spinning),
        )


@dataclass(frozen=True, slots=True)
class Environment:
    intra_op_threads: int
    max_batch: int
    prefill_chunk: int
    prefill_budget_ms: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    skipped: dict[str, str]
    prompt_tokens: dict[str, int]


@dataclass(frozen=True, slots=True)
class OnnxResults:
    settings: Settings
    machine: report.Machine
    command: str
    environment: Environment
    samples: list[SingleSample]
    single: list[SystemSummary]
    scaling: list[ConcurrencySummary]
    ttft: list[TtftSummary]
    gaps: list[GapSummary]
    bandwidth: BandwidthBound
    precisions: list[PrecisionSummary]
    peak_rss: dict[str, int]
    spin: list[SpinSummary] = field(default_factory=list)
    wall_seconds: float = 0.0
    comparisons: list[Comparison] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.comparisons:
            self.comparisons.extend(compare(self.samples, self.single))

    def scaling_ratio(self, streams: int = 8) -> float | None:
        by = {s.streams: s.aggregate_tokens_per_second for s in self.scaling}
        if 1 not in by or streams not in by:
            return None
        return by[streams] / by[1]

    def chosen_gap(self) -> GapSummary | None:
        budget = self.environment.prefill_budget_ms
        return next((g for g in self.gaps if g.prefill_budget_ms == budget), None)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["scaling_ratio_8_over_1"] = self.scaling_ratio()
        return document
