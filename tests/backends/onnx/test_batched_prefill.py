"""Fresh prompts prefilled together give what they give alone; a latency goal bounds the
chunks beside running streams; a request cancelled mid-batch frees its slot."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import aclosing
from pathlib import Path

import anyio
import numpy as np
import pytest

from tests.backends.onnx._helpers import Result, all_slots_free, collect, request, running
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.backends.onnx.prefill_planner import MIN_CHUNK
from tokenwire.events import TokenDelta

pytestmark = pytest.mark.anyio

PROMPTS = (
    "Once upon a time there was a tiny robot",
    "The capital city of France is",
    "def main():",
    "Numbers: 1 2 3",
)


async def together(backend: OnnxBackend, prompts: Sequence[str], tokens: int) -> list[Result]:
    results: dict[int, Result] = {}

    async def one(index: int) -> None:
        results[index] = await collect(backend, request(prompts[index], tokens))

    async with anyio.create_task_group() as tg:
        for index in range(len(prompts)):
            tg.start_soon(one, index)
    return [results[i] for i in range(len(prompts))]


async def test_a_fresh_batch_gives_each_row_the_logits_it_gets_alone(
    tiny_model_dirs: dict[str, Path],
) -> None:
    async with running(tiny_model_dirs["shared"], max_batch=4) as backend:
        assert backend._loop is not None and backend.tokenizer is not None
        runner = backend._loop.runner
        ids = [np.array(backend.tokenizer.encode(p).ids) for p in PROMPTS]
        assert len({len(p) for p in ids}) > 1  # ragged rows
        alone = []
        for prompt in ids:
            alone.append(runner.prefill(0, prompt).copy())
            runner.release(0)
        batched = runner.prefill_fresh(0, ids).copy()
        assert [runner.length(s) for s in range(4)] == [len(p) for p in ids]
        for slot in range(4):
            runner.release(slot)
    assert batched.shape == (4, runner.vocab_size)
    np.testing.assert_array_equal(batched, np.stack(alone))  # fp32 fixture: exact


async def test_fresh_prompts_prefilled_together_stream_what_they_stream_one_by_one(
    model_dir: Path,
) -> None:
    async with running(model_dir, max_batch=4, batch_prefill=False) as backend:
        one_by_one = await together(backend, PROMPTS, 12)
        runs_before = backend.stats.prefill_chunks
    async with running(model_dir, max_batch=4) as backend:
        batched = await together(backend, PROMPTS, 12)
        runs_after = backend.stats.prefill_chunks
        assert await all_slots_free(backend)
    assert [r.ids for r in batched] == [r.ids for r in one_by_one]
    assert runs_before == len(PROMPTS)
    # The shared layout runs the four in one run; the concat one prefills one per run.
    assert runs_after == (1 if model_dir.name == "shared" else len(PROMPTS))


async def test_a_long_prompt_is_still_chunked_to_the_target_gap_beside_running_streams(
    model_dir: Path,
) -> None:
    long_prompt = " ".join(PROMPTS * 2)
    # A target gap below any decode step leaves no room: the smallest chunks, MIN_CHUNK.
    options = {"max_batch": 2, "prefill_chunk": 128, "target_itl_ms": 1e-6}
    async with (
        running(model_dir, **options) as backend,
        aclosing(backend.generate(request(PROMPTS[0], None))) as running_stream,
    ):
        async for event in running_stream:
            if isinstance(event, TokenDelta):
                break
        chunks = backend.stats.prefill_chunks
        result = await collect(backend, request(long_prompt, 2))
        prompt_tokens = result.finish.usage.prompt_tokens
        assert 16 < prompt_tokens <= 128
        assert backend.stats.prefill_chunks - chunks == -(-prompt_tokens // MIN_CHUNK)
    async with running(model_dir, max_batch=2, prefill_chunk=128) as alone:
        assert (await collect(alone, request(long_prompt, 2))).ids == result.ids


async def test_a_request_cancelled_while_batch_prefilling_frees_its_slot(
    tiny_model_dirs: dict[str, Path],
) -> None:
    async with running(tiny_model_dirs["shared"], max_batch=4) as backend:
        expected = await together(backend, PROMPTS[1:], 8)
        assert backend._loop is not None
        runner = backend._loop.runner
        original = runner.prefill_fresh
        inside = threading.Event()
        rows: list[int] = []

        def slow(first: int, prompts: Sequence[np.ndarray]) -> np.ndarray:
            rows.append(len(prompts))
            inside.set()
            time.sleep(0.3)  # the test cancels one row meanwhile
            return original(first, prompts)

        runner.prefill_fresh = slow  # type: ignore[method-assign]
        results: dict[int, Result] = {}
        doomed = anyio.CancelScope()

        async def one(index: int) -> None:
            if index == 0:
                with doomed:
                    await collect(backend, request(PROMPTS[0], 8))
                assert doomed.cancel_called, "the cancelled request ran to its end"
            else:
                results[index] = await collect(backend, request(PROMPTS[index], 8))

        async with anyio.create_task_group() as tg:
            for index in range(len(PROMPTS)):
                tg.start_soon(one, index)
            assert await anyio.to_thread.run_sync(inside.wait, 10)
            doomed.cancel()
        assert rows == [len(PROMPTS)]  # the cancelled one was in the batch
        assert await all_slots_free(backend)
        assert [results[i].ids for i in range(1, len(PROMPTS))] == [r.ids for r in expected]
        runner.prefill_fresh = original  # type: ignore[method-assign]
        assert (await collect(backend, request(PROMPTS[0], 8))).ids  # the slot serves again
