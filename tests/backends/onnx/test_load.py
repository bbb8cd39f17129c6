"""`OnnxBackend.load()` and the model-server-protocol metrics of a real server running it."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._support.server import running_server
from tests.backends.onnx._helpers import all_slots_free, request, running
from tokenwire import create_app
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.events import TokenDelta
from tokenwire.interfaces import ReportsLoad


@pytest.mark.anyio
async def test_load_counts_slots_in_use_as_the_kv_fraction(
    tiny_model_dirs: dict[str, Path],
) -> None:
    async with running(tiny_model_dirs["shared"], max_batch=2) as backend:
        assert isinstance(backend, ReportsLoad)
        idle = backend.load()
        assert (idle.waiting, idle.running, idle.batch_size, idle.kv_used_fraction) == (0, 0, 0, 0)
        assert idle.kv_token_bytes > 0
        streams = [backend.generate(request(f"prompt {i}", max_tokens=200)) for i in range(3)]
        try:
            for stream in streams[:2]:
                while not isinstance(await anext(stream), TokenDelta):
                    pass
            await anext(streams[2])  # submitted; both slots are taken, so it waits
            busy = backend.load()
        finally:
            for stream in streams:
                await stream.aclose()
        assert (busy.waiting, busy.running, busy.batch_size) == (1, 2, 2)
        assert busy.kv_used_fraction == 1.0
        assert await all_slots_free(backend)
        assert backend.load().kv_used_fraction == 0.0


def _values(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if family.type == "gauge"
    }


def test_a_served_onnx_model_exports_protocol_gauges_that_move_with_load(
    tiny_model_dirs: dict[str, Path],
) -> None:
    backend = OnnxBackend(tiny_model_dirs["shared"], max_batch=2, intra_op_threads=1)
    app = create_app(backend, middlewares=["metrics", "prompt_cache"])
    results: list[int] = []

    def chat(i: int) -> None:
        body = {
            "model": backend.model_id,
            "max_tokens": 200,
            "temperature": 0,
            "messages": [{"role": "user", "content": f"hi {i} " * 5}],
        }
        results.append(httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).status_code)

    seen: list[dict[str, float]] = []
    with running_server(app) as url:
        threads = [threading.Thread(target=chat, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            seen.append(_values(httpx.get(f"{url}/metrics").text))
        for thread in threads:
            thread.join()
        rest = httpx.get(f"{url}/metrics").text
    assert results == [200] * 8
    for page in seen:
        assert 0 <= page["vllm:kv_cache_usage_perc"] <= 1
        assert 0 <= page["vllm:num_requests_running"] <= 2
        assert page["vllm:num_requests_waiting"] >= 0
    # Eight requests on two slots: some scrape saw them queue behind a full batch.
    assert max(p["vllm:num_requests_running"] for p in seen) == 2
    assert max(p["vllm:num_requests_waiting"] for p in seen) >= 1
    assert max(p["vllm:kv_cache_usage_perc"] for p in seen) == 1.0
    assert max(p["tokenwire_batch_size"] for p in seen) >= 1
    after = _values(rest)
    assert after["vllm:num_requests_running"] == after["vllm:num_requests_waiting"] == 0
    assert after["vllm:kv_cache_usage_perc"] == 0
    # The prompts' prefixes went into the prefix cache.
    assert 0 < after["tokenwire_prefix_cache_bytes"] <= after["tokenwire_prefix_cache_max_bytes"]
    assert 0 < after["tokenwire_prefix_cache_usage_ratio"] <= 1
    (info,) = [
        s
        for f in text_string_to_metric_families(rest)
        if f.name == "vllm:cache_config_info"
        for s in f.samples
    ]
    assert info.labels["block_size"] == "16"
    assert int(info.labels["num_gpu_blocks"]) > 0
