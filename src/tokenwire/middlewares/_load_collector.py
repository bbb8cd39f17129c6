"""`LoadCollector`: gauges read at scrape time — the backend's load, the prefix cache's bytes —
under tokenwire's names and, for the Gateway API Inference Extension's endpoint picker, vLLM's.

The model-server protocol (kubernetes-sigs/gateway-api-inference-extension,
docs/proposals/003-model-server-protocol/README.md) asks for gauges of queued and running
requests and of KV-cache utilization; the picker's built-in `vllm` engine config reads them as
`vllm:num_requests_waiting`, `vllm:num_requests_running`, `vllm:kv_cache_usage_perc` and
`vllm:cache_config_info`. docs/metrics.md explains every value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tokenwire.interfaces import HoldsCache, LoadSnapshot, ReportsLoad

__all__ = ["LoadCollector"]


class LoadCollector(Collector):
    """Reads `backend.load()` and the caches' sizes each time it is collected (this process only).

    `pipeline_counts` gives (waiting, running) as the metrics middleware counts them: the vLLM
    request gauges fall back to them when the backend does not report its load. KV utilization
    and the cache geometry are then left out rather than shown as 0: an endpoint picker would
    read a constant 0 as a pod with all its KV free.
    """

    def __init__(
        self,
        model: str,
        backend: ReportsLoad | None,
        caches: Sequence[HoldsCache],
        pipeline_counts: Callable[[], tuple[float, float]],
    ) -> None:
        self.model = model
        self.backend = backend
        self.caches = tuple(caches)
        self.pipeline_counts = pipeline_counts

    def collect(self) -> Iterator[Metric]:
        model = self.model
        load = self.backend.load() if self.backend is not None else None
        if load is not None:
            waiting, running = float(load.waiting), float(load.running)
        else:
            waiting, running = self.pipeline_counts()
        yield _gauge(
            "vllm:num_requests_waiting",
            "Requests waiting for the backend to start them (vLLM's name, for endpoint pickers).",
            "model_name",
            model,
            waiting,
        )
        yield _gauge(
            "vllm:num_requests_running",
            "Requests being prefilled or decoded (vLLM's name, for endpoint pickers).",
            "model_name",
            model,
            running,
        )
        if load is not None:
            yield from self._backend_gauges(load)
        if self.caches:
            yield from self._cache_gauges(load)

    def _backend_gauges(self, load: LoadSnapshot) -> Iterator[Metric]:
        used = min(max(load.kv_used_fraction, 0.0), 1.0)
        yield _gauge(
            "tokenwire_batch_size",
            "Sequences in the backend's decode batch now.",
            "model",
            self.model,
            load.batch_size,
        )
        yield _gauge(
            "tokenwire_kv_cache_usage_ratio",
            "Share of the backend's KV cache capacity in use, 0 to 1.",
            "model",
            self.model,
            used,
        )
        yield _gauge(
            "vllm:kv_cache_usage_perc",
            "Share of the backend's KV cache capacity in use, 0 to 1 (vLLM's name).",
            "model_name",
            self.model,
            used,
        )

    def _cache_gauges(self, load: LoadSnapshot | None) -> Iterator[Metric]:
        held = sum(cache.cache_bytes for cache in self.caches)
        budget = sum(cache.cache_budget for cache in self.caches)
        yield _gauge(
            "tokenwire_prefix_cache_bytes",
            "KV bytes the prefix cache holds now.",
            "model",
            self.model,
            held,
        )
        yield _gauge(
            "tokenwire_prefix_cache_max_bytes",
            "The prefix cache's byte budget.",
            "model",
            self.model,
            budget,
        )
        yield _gauge(
            "tokenwire_prefix_cache_usage_ratio",
            "Share of the prefix cache's byte budget in use, 0 to 1.",
            "model",
            self.model,
            min(held / budget, 1.0) if budget else 0.0,
        )
        # The picker's prefix scorer hashes prompts in blocks of `block_size` tokens and models
        # each pod's cache as an LRU of `num_gpu_blocks` of them: tokenwire reuses prefixes
        # from this cache, so its geometry is the one to report (not the per-slot KV buffers).
        if load is None or load.kv_token_bytes <= 0:
            return
        block_tokens = self.caches[0].cache_block_tokens
        info = GaugeMetricFamily(
            "vllm:cache_config_info",
            "Prefix cache geometry (vLLM's name): tokens per block and blocks the budget holds.",
            labels=("model_name", "block_size", "num_gpu_blocks"),
        )
        blocks = budget // (block_tokens * load.kv_token_bytes)
        info.add_metric((self.model, str(block_tokens), str(blocks)), 1.0)
        yield info


def _gauge(name: str, documentation: str, label: str, value: str, sample: float) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=(label,))
    family.add_metric((value,), float(sample))
    return family
