"""`metrics`: Prometheus metrics of every stream, served at `GET /metrics`.

Latency histograms (time to first token, inter-token, end to end, queue, prefill), token,
tool-call and request counters, cancellations by phase and cause, errors by type, running/waiting
gauges, and gauges read at scrape time from the backend's load and the prefix cache (also under
vLLM's names, for endpoint pickers). The registry is injected; `docs/metrics.md` lists every
metric. A continuation (a stream adopted after its replica died) counts only the tokens this
replica generates: the replayed ones were counted where they were first generated.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from functools import partial
from time import perf_counter

import anyio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenwire.errors import DeadlineExceededError, TokenwireError
from tokenwire.events import Event, Finish, PhaseName, Progress, TokenDelta, ToolCallDelta
from tokenwire.interfaces import Generate, HoldsCache, ReportsLoad
from tokenwire.middlewares._load_collector import LoadCollector
from tokenwire.middlewares._metric_set import MetricSet, RequestMetrics
from tokenwire.pipeline import closing
from tokenwire.requests import GenerationRequest

__all__ = ["MetricsMiddleware"]


class MetricsMiddleware:
    """Records metrics of every request that passes; serves them at `path`.

    Put it outermost, so that it sees what the client sees: the queue time and the time to
    first token include every middleware below it, and a deadline or an explicit cancel
    raised by the cancellation middleware is counted with its cause.

    Args:
        app: the next `Generate`.
        registry: where the metrics live; a fresh `CollectorRegistry` when None (no global
            state: two instances never share counts).
        path: the route that serves the metrics.
    """

    def __init__(
        self,
        app: Generate,
        *,
        registry: CollectorRegistry | None = None,
        path: str = "/metrics",
    ) -> None:
        self.app = app
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = MetricSet(self.registry)
        # Under several workers every process writes its samples to files in this directory;
        # a scrape must aggregate the files, not read this process's registry.
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.load_collector: LoadCollector | None = None
        self.routes: list[BaseRoute] = [Route(path, self._serve, methods=["GET"])]

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """Where the app exports its own gauges too (`ExportsMetrics`)."""
        return self.registry

    def observe_load(
        self, model: str, backend: ReportsLoad | None, caches: Sequence[HoldsCache]
    ) -> None:
        """Export `backend`'s load and the caches' sizes, read at each scrape (`ObservesLoad`)."""
        if self.load_collector is not None:
            self.registry.unregister(self.load_collector)
        self.load_collector = LoadCollector(model, backend, caches, partial(self._counts, model))
        self.registry.register(self.load_collector)

    def _counts(self, model: str) -> tuple[float, float]:
        """This process's (waiting, running) requests of `model`, as the gauges count them."""
        counts = []
        for gauge in (self.metrics.waiting, self.metrics.running):
            samples = (s for family in gauge.collect() for s in family.samples)
            counts.append(sum(s.value for s in samples if s.labels.get("model") == model))
        return counts[0], counts[1]

    async def _serve(self, request: Request) -> Response:
        registry = self.registry
        if self.multiprocess_dir is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            if self.load_collector is not None:
                # Read at scrape time, so this process's view only: the worker that answers.
                registry.register(self.load_collector)
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        # Multiprocess collection reads one file per process and metric: keep it off the loop.
        body = await anyio.to_thread.run_sync(encode, registry)
        return Response(body, media_type=content_type)

    def observe_first_byte(self, request: GenerationRequest, seconds: float) -> None:
        """Called by the transport once the response's first byte is written."""
        m = self.metrics.for_request(request.model, request.dialect, request.transport)
        m.time_to_first_byte.observe(seconds)

    async def __call__(self, request: GenerationRequest) -> AsyncIterator[Event]:
        m = self.metrics.for_request(request.model, request.dialect, request.transport)
        started = perf_counter()
        phase: PhaseName = "queued"
        prefill_at: float | None = None
        last_token: float | None = None
        generated = 0
        finished = False
        # Exactly one of the two gauges holds this request until it ends (see `finally`).
        m.waiting.inc()
        waiting, running = True, False
        # The per-token path: bound methods, no label lookups. Tokens are counted as they
        # stream so that a long generation shows in tokens/s while it runs, not at its end.
        observe_gap = m.inter_token_latency.observe
        count_tokens = m.generation_tokens.inc
        # A continuation (failover: this replica adopted a stream whose owner died) first
        # replays the tokens the owner had streamed. The owner counted them, their latencies
        # and the stream's first token as they went out: here they pass uncounted, and so do
        # the gauges; what this replica generates after them is counted as usual.
        replaying = replayed_total = sum(len(group) for group in request.continuation)
        try:
            async with closing(self.app(request)) as events:
                async for event in events:
                    if isinstance(event, (TokenDelta, ToolCallDelta)):
                        replayed = 0
                        if replaying:
                            replayed = min(len(event.token_ids), replaying)
                            replaying -= replayed
                            if replayed and replayed == len(event.token_ids):
                                yield event
                                continue
                        now = perf_counter()
                        if last_token is not None:
                            observe_gap(now - last_token)
                        else:
                            if not replayed_total:  # an adopted stream's went out elsewhere
                                m.time_to_first_token.observe(now - started)
                            if prefill_at is not None:
                                m.prefill_time.observe(now - prefill_at)
                            phase = "decode"
                            if waiting:
                                m.waiting.dec()
                                m.running.inc()
                                waiting, running = False, True
                        last_token = now
                        tokens = len(event.token_ids) - replayed
                        if isinstance(event, ToolCallDelta):
                            if event.name is not None and not replayed:
                                m.tool_calls.inc()
                        elif not tokens:
                            tokens = 1  # a text delta is at least one token
                        if tokens:
                            count_tokens(tokens)
                            generated += tokens
                    elif isinstance(event, Progress):
                        phase = event.phase
                        if phase == "prefill" and prefill_at is None:
                            prefill_at = perf_counter()
                            m.queue_time.observe(prefill_at - started)
                        # A backend may requeue a request (preemption): the gauges follow.
                        queued = phase == "queued"
                        if queued is not waiting:
                            (m.running if queued else m.waiting).dec()
                            (m.waiting if queued else m.running).inc()
                            waiting, running = queued, not queued
                    elif isinstance(event, Finish) and not finished:
                        finished = True
                        self._record_finish(m, event, phase, started, generated + replayed_total)
                    yield event
            if not finished:
                # The endpoint turns a stream without a Finish into an internal error.
                self._record_error(m, "internal")
        except BaseException as exc:
            if not finished:
                self._record_abort(m, exc, phase)
            raise
        finally:
            if waiting:
                m.waiting.dec()
            if running:
                m.running.dec()

    def _record_finish(
        self, m: RequestMetrics, finish: Finish, phase: PhaseName, started: float, generated: int
    ) -> None:
        """`generated`: the completion tokens counted so far, a continuation's replayed ones
        (counted by the replica that died) included, as the usage counts them."""
        m.request_duration.observe(perf_counter() - started)
        usage = finish.usage
        # Deltas without token ids were counted as one token each; the backend knows better.
        if usage.completion_tokens > generated:
            m.generation_tokens.inc(usage.completion_tokens - generated)
        if usage.prompt_tokens:
            m.prompt_tokens.inc(usage.prompt_tokens)
        m.prefix_cache_queries.inc()
        if usage.cached_prompt_tokens:
            m.cached_prompt_tokens.inc(usage.cached_prompt_tokens)
            m.prefix_cache_hits.inc()
        metrics = self.metrics
        metrics.requests.labels(*m.labels, finish.reason).inc()
        if finish.reason == "cancelled":
            # An in-band cancelled Finish comes from a cancel by id (DELETE, WebSocket cancel).
            metrics.cancellations.labels(*m.labels, phase, "explicit").inc()
        elif finish.reason == "error":
            metrics.errors.labels(*m.labels, "internal_error").inc()

    def _record_abort(self, m: RequestMetrics, exc: BaseException, phase: PhaseName) -> None:
        metrics = self.metrics
        if isinstance(exc, DeadlineExceededError):
            cause = "deadline"
        elif isinstance(exc, Exception):
            kind = exc.kind if isinstance(exc, TokenwireError) else "internal"
            self._record_error(m, kind)
            return
        elif isinstance(exc, (GeneratorExit, anyio.get_cancelled_exc_class())):
            # Cancelled while awaiting the backend, or closed by a consumer that stopped
            # reading: either way the client went away.
            cause = "disconnect"
        else:
            return  # KeyboardInterrupt, SystemExit: the process is going away
        metrics.requests.labels(*m.labels, "cancelled").inc()
        metrics.cancellations.labels(*m.labels, phase, cause).inc()

    def _record_error(self, m: RequestMetrics, kind: str) -> None:
        self.metrics.requests.labels(*m.labels, "error").inc()
        self.metrics.errors.labels(*m.labels, kind).inc()
