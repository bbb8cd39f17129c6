"""The Prometheus metrics `MetricsMiddleware` records: names, buckets and bounded labels."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Buckets, in seconds. Prometheus interpolates quantiles inside a bucket, so buckets are dense
# where the values cluster and sparse in the tails; every histogram costs one series per
# bucket per label set, so each list stays near 20. Where the values cluster was measured
# (docs/benchmarks.md, "Figures behind defaults and code"); docs/metrics.md explains each list.
#
# Time to first token, queue time and prefill time: dense over the milliseconds a short prompt
# on a warm model takes, through the fraction of a second of a long prompt, out to the tens of
# seconds of a long prompt behind a full queue; past 60 s a client has usually given up.
FIRST_TOKEN_BUCKETS = (
    0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 0.75,
    1.0, 1.5, 2.5, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0,
)  # fmt: skip
# End to end: a whole generation. Thousands of tokens at CPU decode speeds take tens of seconds
# to minutes, so the range reaches 10 minutes (the cancellation middleware's default cap).
REQUEST_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0,
    20.0, 30.0, 45.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
# Inter-token latency is one decode step: densest at the few milliseconds of a small model's
# step (on a GPU, or on CPU at batch 1), rising with batch size and when a long prefill is
# interleaved; a gap past 2 s is a stall, whatever its size.
INTER_TOKEN_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03,
    0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.0,
)  # fmt: skip

BASE_LABELS = ("model", "dialect", "transport")
# A label value beyond this many distinct ones per label is recorded as "other": a plugin
# dialect that copies a client's model name into the request cannot blow up the series count.
MAX_LABEL_VALUES = 32
_MAX_CACHED_KEYS = 1024


@dataclass(frozen=True, slots=True)
class RequestMetrics:
    """The children of every metric for one (model, dialect, transport), resolved once."""

    labels: tuple[str, str, str]
    time_to_first_token: Histogram
    inter_token_latency: Histogram
    request_duration: Histogram
    time_to_first_byte: Histogram
    queue_time: Histogram
    prefill_time: Histogram
    prompt_tokens: Counter
    generation_tokens: Counter
    cached_prompt_tokens: Counter
    prefix_cache_queries: Counter
    prefix_cache_hits: Counter
    tool_calls: Counter
    running: Gauge
    waiting: Gauge


class _BoundedValues:
    """Passes the first `limit` distinct values of a label through; later ones become "other"."""

    __slots__ = ("limit", "seen")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        value = value or "unknown"  # an empty label value means "no label" to Prometheus
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return "other"


class MetricSet:
    """Every tokenwire metric, registered in `registry`.

    Gauges carry `multiprocess_mode="livesum"` (ignored unless PROMETHEUS_MULTIPROC_DIR is
    set): the running and waiting counts of all live workers add up.
    """

    def __init__(self, registry: CollectorRegistry, *, prefix: str = "tokenwire") -> None:
        base = BASE_LABELS
        self.time_to_first_token = Histogram(
            f"{prefix}_time_to_first_token_seconds",
            "Time from the request reaching the pipeline to its first token.",
            base,
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.inter_token_latency = Histogram(
            f"{prefix}_inter_token_latency_seconds",
            "Time between consecutive token deltas of one stream.",
            base,
            buckets=INTER_TOKEN_BUCKETS,
            registry=registry,
        )
        self.request_duration = Histogram(
            f"{prefix}_request_duration_seconds",
            "End-to-end time of requests that finished (reached a Finish event).",
            base,
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.time_to_first_byte = Histogram(
            f"{prefix}_time_to_first_byte_seconds",
            "Time from the request arriving to its first response byte, at the transport.",
            base,
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.queue_time = Histogram(
            f"{prefix}_queue_time_seconds",
            "Time from the request reaching the pipeline to the backend starting its prefill.",
            base,
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.prefill_time = Histogram(
            f"{prefix}_prefill_time_seconds",
            "Time from the backend starting a prefill to the first token.",
            base,
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            f"{prefix}_prompt_tokens",
            "Prompt tokens of finished requests, cached ones included.",
            base,
            registry=registry,
        )
        self.generation_tokens = Counter(
            f"{prefix}_generation_tokens", "Generated tokens.", base, registry=registry
        )
        self.cached_prompt_tokens = Counter(
            f"{prefix}_cached_prompt_tokens",
            "Prompt tokens served from the prefix cache instead of being prefilled.",
            base,
            registry=registry,
        )
        self.prefix_cache_queries = Counter(
            f"{prefix}_prefix_cache_queries",
            "Finished requests, each one prefix-cache lookup.",
            base,
            registry=registry,
        )
        self.prefix_cache_hits = Counter(
            f"{prefix}_prefix_cache_hits",
            "Finished requests that reused at least one cached prompt token.",
            base,
            registry=registry,
        )
        self.tool_calls = Counter(
            f"{prefix}_tool_calls",
            "Tool calls the model made, each counted once when it starts.",
            base,
            registry=registry,
        )
        self.requests = Counter(
            f"{prefix}_requests",
            "Requests that ended, by finish reason (stop, length, tool_calls, cancelled, error).",
            (*base, "reason"),
            registry=registry,
        )
        self.cancellations = Counter(
            f"{prefix}_cancellations",
            "Cancelled requests by the phase they were in and the cause.",
            (*base, "phase", "reason"),
            registry=registry,
        )
        self.errors = Counter(
            f"{prefix}_errors",
            "Failed requests by error type.",
            (*base, "type"),
            registry=registry,
        )
        self.running = Gauge(
            f"{prefix}_requests_running",
            "Requests being prefilled or decoded.",
            ("model",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.waiting = Gauge(
            f"{prefix}_requests_waiting",
            "Requests waiting for the backend to start them.",
            ("model",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._bounds = tuple(_BoundedValues(MAX_LABEL_VALUES) for _ in base)
        self._by_bounded: dict[tuple[str, str, str], RequestMetrics] = {}
        # Raw label values to children, so a request costs one dict lookup; capped, since
        # raw values past the bound are unbounded (they all share the "other" children).
        self._by_raw: dict[tuple[str, str, str], RequestMetrics] = {}

    def for_request(self, model: str, dialect: str, transport: str) -> RequestMetrics:
        """The children for these label values (bounded), created on first use."""
        key = (model, dialect, transport)
        children = self._by_raw.get(key)
        if children is None:
            bounded = (self._bounds[0](model), self._bounds[1](dialect), self._bounds[2](transport))
            children = self._by_bounded.get(bounded)
            if children is None:
                children = self._by_bounded[bounded] = self._resolve(bounded)
            if len(self._by_raw) < _MAX_CACHED_KEYS:
                self._by_raw[key] = children
        return children

    def _resolve(self, labels: tuple[str, str, str]) -> RequestMetrics:
        return RequestMetrics(
            labels=labels,
            time_to_first_token=self.time_to_first_token.labels(*labels),
            inter_token_latency=self.inter_token_latency.labels(*labels),
            request_duration=self.request_duration.labels(*labels),
            time_to_first_byte=self.time_to_first_byte.labels(*labels),
            queue_time=self.queue_time.labels(*labels),
            prefill_time=self.prefill_time.labels(*labels),
            prompt_tokens=self.prompt_tokens.labels(*labels),
            generation_tokens=self.generation_tokens.labels(*labels),
            cached_prompt_tokens=self.cached_prompt_tokens.labels(*labels),
            prefix_cache_queries=self.prefix_cache_queries.labels(*labels),
            prefix_cache_hits=self.prefix_cache_hits.labels(*labels),
            tool_calls=self.tool_calls.labels(*labels),
            running=self.running.labels(labels[0]),
            waiting=self.waiting.labels(labels[0]),
        )
