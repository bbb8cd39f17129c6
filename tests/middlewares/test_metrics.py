import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Mapping
from functools import partial
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests._support.asgi import call_http
from tests._support.backends import ScriptedBackend
from tests._support.server import running_server
from tokenwire import (
    Event,
    Finish,
    GenerationRequest,
    Progress,
    QueueFullError,
    TokenDelta,
    ToolCallDelta,
    Usage,
    build_pipeline,
    create_app,
)
from tokenwire.middlewares import CancellationMiddleware, MetricsMiddleware
from tokenwire.middlewares._metric_set import MAX_LABEL_VALUES

CHAT = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "x"}]}
ANTHROPIC = {**CHAT, "max_tokens": 50}
NDJSON = {"accept": "application/x-ndjson"}


class Samples:
    """A parsed /metrics page: sample values looked up by name and a subset of labels."""

    def __init__(self, text: str) -> None:
        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of every sample named `name` whose labels include `labels`."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


def metrics_app(backend: object, registry: CollectorRegistry, *inner: object) -> object:
    return create_app(
        backend,  # type: ignore[arg-type]
        middlewares=[partial(MetricsMiddleware, registry=registry), *inner],  # type: ignore[list-item]
    )


async def scrape(app: object, path: str = "/metrics") -> Samples:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get(path)
    assert response.status_code == 200
    return Samples(response.text)


class PhasedBackend:
    """Reports queued and prefill phases with pauses, then streams tokens with cached usage."""

    model_id = "scripted"

    def __init__(
        self, *, queue: float = 0.0, prefill: float = 0.0, tokens: int = 3, hang_in: str = ""
    ) -> None:
        self.queue, self.prefill, self.tokens, self.hang_in = queue, prefill, tokens, hang_in

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        yield Progress("queued")
        await anyio.sleep(self.queue)
        if self.hang_in == "queued":
            await anyio.sleep_forever()
        yield Progress("prefill")
        await anyio.sleep(self.prefill)
        if self.hang_in == "prefill":
            await anyio.sleep_forever()
        for i in range(self.tokens):
            yield TokenDelta(f"t{i}", (i,))
        yield Finish(
            "length", Usage(prompt_tokens=10, completion_tokens=self.tokens, cached_prompt_tokens=8)
        )


@pytest.mark.anyio
async def test_counts_and_histogram_samples_match_the_requests_sent() -> None:
    registry = CollectorRegistry()
    app = metrics_app(ScriptedBackend(["a", "b", "c", "d"]), registry)
    for _ in range(3):
        rec = await call_http(app, "/v1/chat/completions", CHAT)
        assert rec.status == 200
    m = await scrape(app)
    labels = {"model": "scripted", "dialect": "openai-chat", "transport": "sse"}
    assert m.value("tokenwire_time_to_first_token_seconds_count", **labels) == 3
    assert m.value("tokenwire_inter_token_latency_seconds_count", **labels) == 3 * 3
    assert m.value("tokenwire_request_duration_seconds_count", **labels) == 3
    assert m.value("tokenwire_generation_tokens_total", **labels) == 12
    assert m.value("tokenwire_prompt_tokens_total", **labels) == 3
    assert m.value("tokenwire_requests_total", reason="stop", **labels) == 3
    assert m.value("tokenwire_prefix_cache_queries_total", **labels) == 3
    assert m.value("tokenwire_prefix_cache_hits_total") == 0
    # No Progress from this backend: no queue or prefill observations.
    assert m.value("tokenwire_queue_time_seconds_count") == 0
    assert m.value("tokenwire_prefill_time_seconds_count") == 0
    assert m.value("tokenwire_requests_running") == 0
    assert m.value("tokenwire_requests_waiting") == 0
    assert m.value("tokenwire_cancellations_total") == 0
    assert m.value("tokenwire_errors_total") == 0


@pytest.mark.anyio
async def test_labels_carry_the_dialect_and_transport_of_each_request() -> None:
    registry = CollectorRegistry()
    app = metrics_app(ScriptedBackend(["a", "b"]), registry)
    await call_http(app, "/v1/messages", ANTHROPIC, headers=NDJSON)
    await call_http(app, "/v1/chat/completions", CHAT)
    m = await scrape(app)
    name = "tokenwire_requests_total"
    assert m.value(name, dialect="anthropic", transport="ndjson", reason="stop") == 1
    assert m.value(name, dialect="openai-chat", transport="sse", reason="stop") == 1
    assert m.label_values(name, "dialect") == {"anthropic", "openai-chat"}
    assert m.label_values(name, "transport") == {"ndjson", "sse"}


@pytest.mark.anyio
async def test_progress_phases_give_queue_and_prefill_observations() -> None:
    registry = CollectorRegistry()
    app = metrics_app(PhasedBackend(queue=0.3, prefill=0.05), registry)
    await call_http(app, "/v1/chat/completions", CHAT)
    m = await scrape(app)
    assert m.value("tokenwire_queue_time_seconds_count") == 1
    assert m.value("tokenwire_prefill_time_seconds_count") == 1
    assert m.value("tokenwire_queue_time_seconds_sum") >= 0.3
    # Prefill time starts at Progress("prefill"): the queue wait is not in it.
    assert 0.05 <= m.value("tokenwire_prefill_time_seconds_sum") < 0.3
    assert m.value("tokenwire_time_to_first_token_seconds_sum") >= 0.35
    assert m.value("tokenwire_cached_prompt_tokens_total") == 8
    assert m.value("tokenwire_prompt_tokens_total") == 10
    assert m.value("tokenwire_prefix_cache_hits_total") == 1
    assert m.value("tokenwire_requests_total", reason="length") == 1
    # Buckets are cumulative: the 0.3 s queue wait is above the 0.25 s bucket's bound.
    assert m.value("tokenwire_queue_time_seconds_bucket", le="0.25") == 0
    assert m.value("tokenwire_queue_time_seconds_bucket", le="+Inf") == 1


@pytest.mark.anyio
async def test_gauges_track_a_request_from_waiting_to_running_to_gone() -> None:
    registry = CollectorRegistry()
    gate = anyio.Event()

    async def backend(request: GenerationRequest) -> AsyncIterator[Event]:
        yield Progress("queued")
        yield Progress("prefill")
        yield TokenDelta("a", (1,))
        await gate.wait()
        yield Finish("stop", Usage(1, 1))

    def gauges() -> tuple[float | None, float | None]:
        return (
            registry.get_sample_value("tokenwire_requests_waiting", {"model": "m"}),
            registry.get_sample_value("tokenwire_requests_running", {"model": "m"}),
        )

    pipeline = build_pipeline(backend, [partial(MetricsMiddleware, registry=registry)])
    stream = pipeline(GenerationRequest(model="m", prompt="p"))
    assert isinstance(await stream.__anext__(), Progress)
    assert gauges() == (1, 0)
    await stream.__anext__()  # prefill
    assert gauges() == (0, 1)
    await stream.__anext__()  # first token
    assert gauges() == (0, 1)
    gate.set()
    assert isinstance(await stream.__anext__(), Finish)
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert gauges() == (0, 0)


@pytest.mark.anyio
async def test_disconnect_mid_stream_counts_a_decode_cancellation_and_frees_the_running_gauge() -> (
    None
):
    registry = CollectorRegistry()
    backend = ScriptedBackend([f" w{i}" for i in range(200)], delay=0.02)
    with running_server(metrics_app(backend, registry)) as url:  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            async with client.stream("POST", "/v1/chat/completions", json=CHAT) as response:
                received = 0
                async for line in response.aiter_lines():
                    received += line.startswith("data:")
                    if received == 3:
                        break
            running = 1.0
            with anyio.fail_after(5):
                while running != 0:
                    await anyio.sleep(0.02)
                    page = (await client.get("/metrics")).text
                    running = Samples(page).value("tokenwire_requests_running")
    m = Samples(page)
    assert backend.finished_normally == 0
    assert m.value("tokenwire_cancellations_total", phase="decode", reason="disconnect") == 1
    assert m.value("tokenwire_requests_total", reason="cancelled") == 1
    assert m.value("tokenwire_requests_total") == 1
    assert m.value("tokenwire_request_duration_seconds_count") == 0
    assert m.value("tokenwire_time_to_first_token_seconds_count") == 1
    assert 0 < m.value("tokenwire_generation_tokens_total") < 200
    assert m.value("tokenwire_requests_waiting") == 0


@pytest.mark.anyio
@pytest.mark.parametrize("phase", ["queued", "prefill"])
async def test_disconnect_before_the_first_token_counts_the_phase_it_hit(phase: str) -> None:
    registry = CollectorRegistry()
    app = metrics_app(PhasedBackend(hang_in=phase), registry)
    await call_http(app, "/v1/chat/completions", CHAT, disconnect_after=0.1)
    m = await scrape(app)
    assert m.value("tokenwire_cancellations_total", phase=phase, reason="disconnect") == 1
    assert m.value("tokenwire_cancellations_total") == 1
    assert m.value("tokenwire_time_to_first_token_seconds_count") == 0
    assert m.value("tokenwire_requests_waiting") == 0
    assert m.value("tokenwire_requests_running") == 0


@pytest.mark.anyio
async def test_deadline_raised_below_counts_as_a_deadline_cancellation() -> None:
    registry = CollectorRegistry()
    backend = ScriptedBackend([f" w{i}" for i in range(200)], delay=0.02)
    app = metrics_app(backend, registry, CancellationMiddleware)
    rec = await call_http(app, "/v1/chat/completions", CHAT, headers={"x-request-timeout": "0.1"})
    assert "deadline" in rec.body.decode()
    m = await scrape(app)
    assert m.value("tokenwire_cancellations_total", phase="decode", reason="deadline") == 1
    assert m.value("tokenwire_requests_total", reason="cancelled") == 1
    assert m.value("tokenwire_errors_total") == 0
    assert m.value("tokenwire_requests_running") == 0


@pytest.mark.anyio
async def test_explicit_cancel_by_id_counts_as_an_explicit_cancellation() -> None:
    registry = CollectorRegistry()
    backend = ScriptedBackend([f" w{i}" for i in range(200)], delay=0.02)
    app = metrics_app(backend, registry, CancellationMiddleware)
    headers = {"x-request-id": "req-metrics-1"}

    async def cancel_soon() -> None:
        await anyio.sleep(0.1)
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.delete("/v1/requests/req-metrics-1")
        assert response.status_code == 200

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_soon)
        await call_http(app, "/v1/chat/completions", CHAT, headers=headers)
    m = await scrape(app)
    assert m.value("tokenwire_cancellations_total", phase="decode", reason="explicit") == 1
    assert m.value("tokenwire_requests_total", reason="cancelled") == 1
    assert m.value("tokenwire_requests_running") == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "kind"),
    [(QueueFullError("queue is full"), "rate_limit"), (RuntimeError("boom"), "internal")],
)
async def test_error_before_the_first_token_counts_errors_by_kind(
    error: Exception, kind: str
) -> None:
    registry = CollectorRegistry()
    app = metrics_app(ScriptedBackend(["x"], fail_at=0, error=error), registry)
    rec = await call_http(app, "/v1/chat/completions", CHAT)
    assert rec.status >= 400
    m = await scrape(app)
    assert m.value("tokenwire_errors_total", type=kind, dialect="openai-chat") == 1
    assert m.value("tokenwire_errors_total") == 1
    assert m.value("tokenwire_requests_total", reason="error") == 1
    assert m.value("tokenwire_cancellations_total") == 0
    assert m.value("tokenwire_requests_waiting") == 0


@pytest.mark.anyio
async def test_error_mid_stream_is_counted_once_and_frees_the_running_gauge() -> None:
    registry = CollectorRegistry()
    app = metrics_app(ScriptedBackend(["a", "b", "c"], fail_at=2), registry)
    rec = await call_http(app, "/v1/chat/completions", CHAT)
    assert rec.status == 200
    m = await scrape(app)
    assert m.value("tokenwire_errors_total", type="internal") == 1
    assert m.value("tokenwire_inter_token_latency_seconds_count") == 1
    assert m.value("tokenwire_requests_running") == 0


@pytest.mark.anyio
async def test_two_instances_with_separate_registries_share_no_counts() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    app_a = metrics_app(ScriptedBackend(["a"]), first)
    app_b = metrics_app(ScriptedBackend(["a"]), second)
    for _ in range(2):
        await call_http(app_a, "/v1/chat/completions", CHAT)
    await call_http(app_b, "/v1/chat/completions", CHAT)
    assert (await scrape(app_a)).value("tokenwire_requests_total") == 2
    assert (await scrape(app_b)).value("tokenwire_requests_total") == 1
    # Without a registry each instance makes its own: constructing two must not clash.
    MetricsMiddleware(ScriptedBackend([]).generate)
    MetricsMiddleware(ScriptedBackend([]).generate)


@pytest.mark.anyio
async def test_metrics_route_negotiates_openmetrics_and_honours_a_custom_path() -> None:
    app = create_app(
        ScriptedBackend(["a"]),
        middlewares=[partial(MetricsMiddleware, registry=CollectorRegistry(), path="/m")],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        plain = await client.get("/m")
        open_metrics = await client.get("/m", headers={"accept": "application/openmetrics-text"})
        default_path = await client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE tokenwire_time_to_first_token_seconds histogram" in plain.text
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")
    assert default_path.status_code in (404, 405)


@pytest.mark.anyio
async def test_label_values_past_the_bound_collapse_into_other() -> None:
    registry = CollectorRegistry()

    async def backend(request: GenerationRequest) -> AsyncIterator[Event]:
        yield Finish("stop")

    pipeline = build_pipeline(backend, [partial(MetricsMiddleware, registry=registry)])
    assert isinstance(pipeline, MetricsMiddleware)
    for i in range(MAX_LABEL_VALUES + 10):
        request = GenerationRequest(model=f"client-model-{i}", prompt="p")
        async for _ in pipeline(request):
            pass
        pipeline.observe_first_byte(request, 0.01)  # as the transport does
    text = generate_latest(registry).decode()
    for name in ("tokenwire_requests_total", "tokenwire_time_to_first_byte_seconds_count"):
        models = Samples(text).label_values(name, "model")
        assert len(models) == MAX_LABEL_VALUES + 1
        assert "other" in models
        assert Samples(text).value(name, model="other") == 10


@pytest.mark.anyio
async def test_tool_call_tokens_count_as_generated_and_the_first_as_the_first_token() -> None:
    registry = CollectorRegistry()

    async def backend(request: GenerationRequest) -> AsyncIterator[Event]:
        await anyio.sleep(0.05)
        yield ToolCallDelta(0, "call_a", "f", "", (1, 2))
        yield ToolCallDelta(0, arguments="{}", token_ids=(3,))
        yield ToolCallDelta(1, "call_b", "g", "{}", ())  # no ids: counts no token
        yield TokenDelta("done", (4,))
        # The usage says what was streamed: nothing is topped up at the end.
        yield Finish("tool_calls", Usage(1, 4))

    pipeline = build_pipeline(backend, [partial(MetricsMiddleware, registry=registry)])
    async for _ in pipeline(GenerationRequest(model="m", prompt="p")):
        pass
    samples = Samples(generate_latest(registry).decode())
    assert samples.value("tokenwire_generation_tokens_total") == 4
    assert samples.value("tokenwire_tool_calls_total") == 2
    assert samples.value("tokenwire_time_to_first_token_seconds_count") == 1
    assert samples.value("tokenwire_time_to_first_token_seconds_sum") >= 0.05
    assert samples.value("tokenwire_inter_token_latency_seconds_count") == 3
    assert samples.value("tokenwire_requests_total", reason="tool_calls") == 1


@pytest.mark.anyio
async def test_a_stream_of_only_tool_calls_is_timed_from_its_first_call() -> None:
    registry = CollectorRegistry()

    async def backend(request: GenerationRequest) -> AsyncIterator[Event]:
        yield ToolCallDelta(0, "call_a", "f", "{}", (1,))
        await anyio.sleep(0.2)
        yield Finish("tool_calls", Usage(1, 1))

    pipeline = build_pipeline(backend, [partial(MetricsMiddleware, registry=registry)])
    async for _ in pipeline(GenerationRequest(model="m", prompt="p")):
        pass
    samples = Samples(generate_latest(registry).decode())
    assert samples.value("tokenwire_time_to_first_token_seconds_count") == 1
    assert samples.value("tokenwire_time_to_first_token_seconds_sum") < 0.15
    assert samples.value("tokenwire_generation_tokens_total") == 1


@pytest.mark.anyio
async def test_a_continuation_counts_only_the_tokens_generated_after_its_replay() -> None:
    """Failover: the adopting replica replays the tokens the dead owner streamed (the owner
    counted them, and their first token's latency) and generates on; it counts only what it
    generates, while the Finish's usage (the client's) still covers the whole answer. The
    replay comes first, before the backend queues the request again (as the ONNX backend's
    does): it leaves the gauges and the latency histograms alone."""
    registry = CollectorRegistry()
    finishes: list[Usage] = []

    async def backend(request: GenerationRequest) -> AsyncIterator[Event]:
        assert request.continuation == ((1, 2), (3,))
        yield TokenDelta("a", (1, 2))
        yield ToolCallDelta(0, "call_a", "f", "", (3,))
        yield Progress("queued")
        yield Progress("prefill")
        yield ToolCallDelta(0, arguments="{}", token_ids=(4,))
        yield TokenDelta("b", (5, 6))
        yield Finish("stop", Usage(7, 6))

    pipeline = build_pipeline(backend, [partial(MetricsMiddleware, registry=registry)])
    request = GenerationRequest(model="m", prompt="p", continuation=((1, 2), (3,)))
    async for event in pipeline(request):
        if isinstance(event, Finish):
            finishes.append(event.usage)
    assert finishes == [Usage(7, 6)]
    samples = Samples(generate_latest(registry).decode())
    assert samples.value("tokenwire_generation_tokens_total") == 3  # 4, 5, 6: not 1-3 again
    assert samples.value("tokenwire_prompt_tokens_total") == 7  # the owner never finished
    assert samples.value("tokenwire_tool_calls_total") == 0  # call_a began on the owner
    assert samples.value("tokenwire_time_to_first_token_seconds_count") == 0
    assert samples.value("tokenwire_prefill_time_seconds_count") == 1  # this replica's own
    assert samples.value("tokenwire_inter_token_latency_seconds_count") == 1  # 4 → 5-6
    assert samples.value("tokenwire_requests_total", reason="stop") == 1
    assert samples.value("tokenwire_requests_running") == 0


@pytest.mark.anyio
async def test_a_continuation_tops_up_only_its_own_share_of_the_usage() -> None:
    """Deltas without token ids count one each; the Finish's count tops them up, less the
    replayed tokens the owner counted."""
    registry = CollectorRegistry()

    async def backend(request: GenerationRequest) -> AsyncIterator[Event]:
        yield TokenDelta("a", (1,))
        yield TokenDelta("bc")  # two tokens, no ids
        yield Finish("stop", Usage(1, 4))

    pipeline = build_pipeline(backend, [partial(MetricsMiddleware, registry=registry)])
    async for _ in pipeline(GenerationRequest(model="m", prompt="p", continuation=((1,),))):
        pass
    samples = Samples(generate_latest(registry).decode())
    assert samples.value("tokenwire_generation_tokens_total") == 3  # 4 in all, 1 replayed


# Each worker is its own process: it serves `requests` and exits, leaving its samples in
# the shared directory; the last one scrapes /metrics without serving a request itself.
_WORKER = textwrap.dedent(
    """
    import json, sys
    import anyio, httpx
    from prometheus_client.parser import text_string_to_metric_families
    from tests._support.asgi import call_http
    from tests._support.backends import ScriptedBackend
    from tokenwire import create_app
    from tokenwire.middlewares import MetricsMiddleware

    CHAT = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "x"}]}

    async def main(requests: int) -> None:
        app = create_app(ScriptedBackend(["a", "b", "c"]), middlewares=[MetricsMiddleware])
        for _ in range(requests):
            assert (await call_http(app, "/v1/chat/completions", CHAT)).status == 200
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            text = (await client.get("/metrics")).text
        values = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                values[s.name] = values.get(s.name, 0) + s.value
        print(json.dumps(values))

    anyio.run(main, int(sys.argv[1]))
    """
)


def _run_worker(requests: int, env: Mapping[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, str(requests)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    values: dict[str, float] = json.loads(done.stdout)
    return values


def test_multiprocess_mode_aggregates_every_worker(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    _run_worker(2, env)
    _run_worker(3, env)
    values = _run_worker(0, env)
    assert values["tokenwire_requests_total"] == 5
    assert values["tokenwire_time_to_first_token_seconds_count"] == 5
    assert values["tokenwire_generation_tokens_total"] == 15
    # livesum gauges: every worker's requests ended, so nothing is running anywhere.
    assert values["tokenwire_requests_running"] == 0
    assert any(p.name.startswith("gauge_livesum") for p in tmp_path.iterdir())


def test_time_to_first_byte_is_measured_at_the_transport() -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from tests._support.server import running_server
    from tokenwire import create_app
    from tokenwire.backends.echo import EchoBackend
    from tokenwire.middlewares.metrics import MetricsMiddleware

    registry = CollectorRegistry()
    app = create_app(EchoBackend(), middlewares=[partial(MetricsMiddleware, registry=registry)])
    body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    with running_server(app) as url:
        for accept in ("text/event-stream", "application/x-ndjson"):
            httpx.post(f"{url}/v1/chat/completions", json=body, headers={"accept": accept})
        text = httpx.get(f"{url}/metrics").text
    counts = {
        sample.labels["transport"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "tokenwire_time_to_first_byte_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    }
    assert counts == {"sse": 1.0, "ndjson": 1.0}


def test_every_exposed_metric_is_documented() -> None:
    from tests._support.backends import LoadedBackend
    from tokenwire.interfaces import LoadSnapshot

    # Every built-in middleware, so anything that registers a metric through the app (the
    # transports' buffered-bytes gauge included) shows on the page; a backend that reports
    # its load, so the scrape-time gauges do too.
    backend = LoadedBackend(LoadSnapshot(1, 1, 1, 0.5, kv_token_bytes=64))
    app = create_app(backend, middlewares=["metrics", "cancellation", "prompt_cache"])
    body = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "a"}]}
    with running_server(app) as url:
        for accept in ("text/event-stream", "application/x-ndjson"):
            httpx.post(f"{url}/v1/chat/completions", json=body, headers={"accept": accept})
        # OpenMetrics keeps `_created` inside its family (the text format makes it a gauge).
        text = httpx.get(f"{url}/metrics", headers={"accept": OPENMETRICS}).text
    families = {
        # The family drops a counter's `_total`; the docs name the series users query.
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in openmetrics_families(text)
        if family.name.startswith(("tokenwire_", "vllm:"))
    }
    assert "tokenwire_stream_buffered_bytes" in families
    assert {"vllm:kv_cache_usage_perc", "vllm:cache_config_info"} <= families
    assert "tokenwire_time_to_first_byte_seconds" in families
    docs = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    assert {name for name in families if f"`{name}`" not in docs} == set()
