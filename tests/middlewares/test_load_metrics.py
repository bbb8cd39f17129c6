"""The scrape-time load gauges, and the model-server-protocol metrics under vLLM's names."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests._support.backends import LoadedBackend, ScriptedBackend
from tests._support.server import running_server
from tokenwire import create_app
from tokenwire.backends.echo import EchoBackend
from tokenwire.interfaces import HoldsCache, LoadSnapshot
from tokenwire.middlewares import MetricsMiddleware
from tokenwire.middlewares.prompt_cache import PromptCacheMiddleware
from tokenwire.prompt_cache import PromptCache

# What the Gateway API Inference Extension's endpoint picker reads with its `vllm` engine config.
PROTOCOL_GAUGES = ("vllm:num_requests_waiting", "vllm:num_requests_running")
KV_GAUGES = ("vllm:kv_cache_usage_perc", "tokenwire_kv_cache_usage_ratio", "tokenwire_batch_size")
CHAT = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "x"}]}


class Page:
    """A parsed /metrics page: families by name (types) and samples by name."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def type(self, name: str) -> str:
        return self.families[name].type

    def sample(self, name: str) -> tuple[dict[str, str], float]:
        (sample,) = self.families[name].samples
        return sample.labels, sample.value


def scrape(url: str) -> Page:
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    return Page(response.text)


def test_a_backend_that_reports_load_is_exported_under_vllm_and_tokenwire_names() -> None:
    snapshot = LoadSnapshot(
        waiting=3, running=2, batch_size=1, kv_used_fraction=0.5, kv_token_bytes=1024
    )
    cache = PromptCache(max_bytes=1 << 20, block_tokens=16)
    app = create_app(
        LoadedBackend(snapshot),
        middlewares=[MetricsMiddleware, partial(PromptCacheMiddleware, cache=cache)],
    )
    with running_server(app) as url:
        page = scrape(url)
    for name in (*PROTOCOL_GAUGES, *KV_GAUGES, "vllm:cache_config_info"):
        assert page.type(name) == "gauge", name
    assert page.sample("vllm:num_requests_waiting") == ({"model_name": "scripted"}, 3.0)
    assert page.sample("vllm:num_requests_running") == ({"model_name": "scripted"}, 2.0)
    assert page.sample("vllm:kv_cache_usage_perc") == ({"model_name": "scripted"}, 0.5)
    assert page.sample("tokenwire_kv_cache_usage_ratio") == ({"model": "scripted"}, 0.5)
    assert page.sample("tokenwire_batch_size") == ({"model": "scripted"}, 1.0)
    # The prefix cache's geometry: 1 MiB / (16 tokens x 1 KiB) = 64 blocks of 16 tokens.
    labels, value = page.sample("vllm:cache_config_info")
    assert (labels["block_size"], labels["num_gpu_blocks"], value) == ("16", "64", 1.0)
    assert page.sample("tokenwire_prefix_cache_max_bytes")[1] == 1 << 20
    assert page.sample("tokenwire_prefix_cache_bytes")[1] == 0
    assert page.sample("tokenwire_prefix_cache_usage_ratio")[1] == 0


def test_gauges_are_read_at_each_scrape_and_clamped_to_a_fraction() -> None:
    backend = LoadedBackend(LoadSnapshot(0, 0, 0, 0.0))
    app = create_app(backend, middlewares=[MetricsMiddleware])
    with running_server(app) as url:
        assert scrape(url).sample("vllm:kv_cache_usage_perc")[1] == 0.0
        backend.snapshot = LoadSnapshot(5, 8, 8, 1.7)
        page = scrape(url)
    assert page.sample("vllm:kv_cache_usage_perc")[1] == 1.0
    assert page.sample("vllm:num_requests_waiting")[1] == 5.0
    # Without a prefix cache, there is no prefix geometry to report.
    assert "vllm:cache_config_info" not in page.families


class _FakeCache:
    """A middleware that holds a cache (`HoldsCache`) of fixed size, passing requests through."""

    def __init__(self, app: object, held: int = 300, budget: int = 1200) -> None:
        self.app, self.held, self.budget = app, held, budget

    def __call__(self, request: object) -> object:
        return self.app(request)  # type: ignore[operator]

    @property
    def cache_bytes(self) -> int:
        return self.held

    @property
    def cache_budget(self) -> int:
        return self.budget

    @property
    def cache_block_tokens(self) -> int:
        return 16


def test_prefix_cache_utilization_is_bytes_in_use_over_the_budget() -> None:
    assert isinstance(PromptCacheMiddleware(ScriptedBackend([]).generate), HoldsCache)
    app = create_app(EchoBackend(), middlewares=[MetricsMiddleware, _FakeCache])
    with running_server(app) as url:
        page = scrape(url)
    assert page.sample("tokenwire_prefix_cache_bytes") == ({"model": "echo"}, 300.0)
    assert page.sample("tokenwire_prefix_cache_usage_ratio")[1] == 0.25
    # The echo backend reports no KV: no geometry either.
    assert "vllm:cache_config_info" not in page.families


def test_a_backend_without_load_exports_request_gauges_from_the_pipeline_and_no_kv() -> None:
    backend = ScriptedBackend(["a", "b", "c"], delay=0.3)
    app = create_app(backend, middlewares=[MetricsMiddleware])
    with running_server(app) as url:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=CHAT, timeout=10) as response:
            chunks = response.iter_raw()
            next(chunks)  # the first token is out: the request is running
            busy = scrape(url)
            for _ in chunks:
                pass
        page = scrape(url)  # after the stream ended
    for name in PROTOCOL_GAUGES:
        assert busy.type(name) == "gauge"
    assert busy.sample("vllm:num_requests_running") == ({"model_name": "scripted"}, 1.0)
    assert busy.sample("vllm:num_requests_waiting")[1] == 0.0
    assert page.sample("vllm:num_requests_running")[1] == 0.0
    # KV utilization is unknown, not 0 (a 0 tells a picker the pod's KV is all free).
    assert not set(KV_GAUGES) & set(page.families)


def test_multiprocess_mode_still_serves_this_workers_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    registry = CollectorRegistry()
    app = create_app(
        LoadedBackend(LoadSnapshot(1, 2, 2, 0.25)),
        middlewares=[partial(MetricsMiddleware, registry=registry)],
    )
    with running_server(app) as url:
        page = scrape(url)
    assert page.sample("vllm:kv_cache_usage_perc")[1] == 0.25
    assert page.sample("vllm:num_requests_running")[1] == 2.0
