"""What the transport benchmark measured: settings, samples, medians and the ratios against
its targets."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from benchmarks._shared.report import Machine
from benchmarks.transport._servers import ServerSettings

TARGETS = {"raw": 0.6, "sse-starlette": 1.5}
"""tokenwire's tokens/s must be at least this multiple of each baseline's (issue 2)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """How much work one run does."""

    words: int = 2000
    single_requests: int = 8
    concurrency: int = 32
    requests_per_stream: int = 2
    rounds: int = 7
    ceiling_repeats: int = 20

    @classmethod
    def quick(cls) -> Settings:
        """A smoke run: seconds, not minutes; its numbers are not worth comparing."""
        return cls(words=200, single_requests=3, concurrency=4, rounds=1, ceiling_repeats=3)


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed measurement of one server in one scenario."""

    server: str
    scenario: str
    round: int
    tokens: int
    seconds: float
    server_cpu_seconds: float
    client_cpu_seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


@dataclass(frozen=True, slots=True)
class Summary:
    """The medians of one server in one scenario."""

    server: str
    scenario: str
    tokens_per_second: float
    microseconds_per_token: float
    server_cpu_microseconds_per_token: float
    client_cpu_share: float
    """Client CPU time over wall time: near 1.0 would mean the client is the bottleneck."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """tokenwire against both baselines in one scenario."""

    scenario: str
    vs_raw: float
    vs_sse_starlette: float
    overhead_microseconds_per_token: float
    """tokenwire's wall time per token minus the raw emitter's."""
    server_cpu_overhead_microseconds_per_token: float
    cpu_vs_raw: float
    """Tokens per server-CPU-second, tokenwire over raw: the figure least moved by noise."""
    cpu_vs_sse_starlette: float
    meets_raw_target: bool
    meets_sse_starlette_target: bool


@dataclass(frozen=True, slots=True)
class ClientCeiling:
    """What the client alone can parse: the raw emitter's recorded bytes replayed in memory."""

    parse_tokens_per_second: float
    bytes_per_token: float


@dataclass(frozen=True, slots=True)
class TransportResults:
    settings: Settings
    server_settings: ServerSettings
    machine: Machine
    command: str
    client: ClientCeiling
    samples: list[Sample]
    summaries: list[Summary]
    comparisons: list[Comparison]

    def summary(self, server: str, scenario: str) -> Summary:
        return next(s for s in self.summaries if s.server == server and s.scenario == scenario)

    def to_json(self) -> dict[str, object]:
        document = asdict(self)
        for sample, row in zip(self.samples, document["samples"], strict=True):
            row["tokens_per_second"] = sample.tokens_per_second
        document["targets"] = TARGETS
        return document
