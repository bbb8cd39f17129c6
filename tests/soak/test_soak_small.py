"""A small soak in `make test`: many streams against a real server, with clients that
disconnect at random points and clients that read slowly; then nothing may be left behind.

The full soak (1,000 + 200 streams, the real SmolLM2) is `make soak`, in benchmarks/soak.py,
which runs this same client code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import httpx
import pytest
from benchmarks.soak._client import (
    StreamOutcome,
    StreamPlan,
    Tally,
    make_plans,
    metric_sum,
    run_plans,
)
from benchmarks.soak._server import SEND_BUFFER, SoakApp, build_soak_app

from tests._support.server import running_server
from tests.backends.onnx.tiny_models import write_model_dir
from tokenwire.backends.echo import EchoBackend
from tokenwire.backends.onnx import OnnxBackend

pytestmark = pytest.mark.anyio

ECHO_PROMPTS = tuple(" ".join(f"p{p}w{i}" for i in range(80)) for p in range(8))
TINY_PROMPTS = ("Once upon a time", "The capital city of France is", "def main():", "1 2 3")


async def at_rest(url: str, soak: SoakApp, tasks_before: int) -> dict[str, float]:
    """Wait (bounded) until the server holds no stream, then return its figures."""
    async with httpx.AsyncClient(base_url=url) as client:
        with anyio.fail_after(10):
            while True:
                stats = (await client.get("/debug/stats")).json()
                if stats["active_streams"] == 0 and stats["tasks"] <= tasks_before:
                    break
                await anyio.sleep(0.05)
        metrics = (await client.get("/metrics")).text
    return {
        **stats,
        "running": metric_sum(metrics, "tokenwire_requests_running"),
        "waiting": metric_sum(metrics, "tokenwire_requests_waiting"),
        "gauge_buffered": metric_sum(metrics, "tokenwire_stream_buffered_bytes"),
        "requests": metric_sum(metrics, "tokenwire_requests_total"),
    }


async def task_count(url: str) -> int:
    async with httpx.AsyncClient(base_url=url) as client:
        return int((await client.get("/debug/stats")).json()["tasks"])


def assert_clean_run(outcomes: Sequence[StreamOutcome], plans: Sequence[StreamPlan]) -> Tally:
    tally = Tally.of(outcomes)
    assert tally.streams == len(plans)
    assert tally.server_errors == 0
    failures = [o for o in outcomes if not o.dropped and not o.completed]
    assert not failures, failures[:3]
    assert tally.slow_completed == sum(p.kind == "slow" for p in plans)
    assert tally.dropped > 0  # the plan's disconnects happened
    return tally


async def test_echo_soak_leaves_nothing_behind() -> None:
    soak = build_soak_app(EchoBackend(delay=0.002))
    plans = make_plans(150, ECHO_PROMPTS, seed=1)
    with running_server(soak.app, send_buffer=SEND_BUFFER) as url:
        before = await task_count(url)
        outcomes = await run_plans(url, plans, concurrency=16, model="echo", max_tokens=60)
        rest = await at_rest(url, soak, before)
    tally = assert_clean_run(outcomes, plans)
    for outcome in outcomes:
        if outcome.completed:
            assert outcome.text == " ".join(outcome.plan.prompt.split(" ")[:60])
    assert rest["running"] == rest["waiting"] == 0
    assert rest["buffered_bytes"] == rest["gauge_buffered"] == 0
    # Every request that reached the pipeline ended there, as finished or cancelled.
    assert tally.completed <= rest["requests"] <= len(plans)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("soak") / "shared", "shared")


async def test_onnx_soak_frees_every_slot_and_batched_text_equals_solo(tiny_model: Path) -> None:
    backend = OnnxBackend(tiny_model, max_batch=4)
    soak = build_soak_app(backend)
    plans = make_plans(20, TINY_PROMPTS, seed=2, drop_share=0.2, slow_share=0.1)
    with running_server(soak.app, send_buffer=SEND_BUFFER) as url:
        model = backend.model_id
        solo = {}
        for prompt in TINY_PROMPTS:
            alone = await run_plans(
                url, [StreamPlan(0, prompt, "normal")], concurrency=1, model=model, max_tokens=24
            )
            assert alone[0].completed
            solo[prompt] = alone[0].text
        before = await task_count(url)
        outcomes = await run_plans(url, plans, concurrency=8, model=model, max_tokens=24)
        rest = await at_rest(url, soak, before)
    assert_clean_run(outcomes, plans)
    for outcome in outcomes:
        if outcome.completed:
            assert outcome.text == solo[outcome.plan.prompt]
    assert rest["free_slots"] == rest["max_batch"] == 4
    assert rest["running"] == rest["waiting"] == rest["prefilling"] == 0
    assert rest["buffered_bytes"] == rest["gauge_buffered"] == 0
