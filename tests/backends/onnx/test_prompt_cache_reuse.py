"""Prefix reuse on the tiny models, both KV contracts: a hit streams exactly what a miss does."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from tests.backends.onnx._helpers import Result, collect, request, running
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.events import Finish, Progress, TokenDelta
from tokenwire.middlewares.prompt_cache import PromptCacheMiddleware
from tokenwire.prompt_cache import PromptCache
from tokenwire.requests import ChatMessage, GenerationRequest

pytestmark = pytest.mark.anyio

SYSTEM = (
    "You are a tiny robot. The capital city of France is Paris. The capital of Japan is "
    "Tokyo. Once upon a time there was a tiny language model that liked to count sheep."
)
QUESTIONS = ("Name the capital city of France.", "Count the sheep.", "def main():")


def chat(question: str, max_tokens: int = 16) -> GenerationRequest:
    messages = (ChatMessage("system", SYSTEM), ChatMessage("user", question))
    return GenerationRequest(
        model="tiny", messages=messages, max_tokens=max_tokens, temperature=0.0
    )


async def through(middleware: PromptCacheMiddleware, req: GenerationRequest) -> Result:
    events = [event async for event in middleware(req)]
    finish = events[-1]
    assert isinstance(finish, Finish)
    deltas = tuple(e for e in events if isinstance(e, TokenDelta))
    return Result(deltas, finish, tuple(events))


def prompt_ids(backend: OnnxBackend, prompt: str) -> list[int]:
    assert backend.tokenizer is not None
    return list(backend.tokenizer.encode(prompt).ids)


def cached(backend: OnnxBackend, block: int, **options: Any) -> PromptCacheMiddleware:
    return PromptCacheMiddleware(backend.generate, block_tokens=block, **options)


@pytest.mark.parametrize("prefill_chunk", [256, 5])
async def test_a_hit_that_covers_the_whole_prompt_but_the_last_token_streams_the_same_tokens(
    model_dir: Path, prefill_chunk: int
) -> None:
    prompt = "Once upon a time there was a tiny robot that liked to count"
    async with running(model_dir, prefill_chunk=prefill_chunk) as backend:
        ids = prompt_ids(backend, prompt)
        # One block holding the whole prompt: the hit must leave its last token to prefill.
        middleware = cached(backend, len(ids))
        alone = await collect(backend, request(prompt, 24))
        miss = await through(middleware, request(prompt, 24))
        hit = await through(middleware, request(prompt, 24))
    assert miss.finish.usage.cached_prompt_tokens == 0
    assert hit.finish.usage.cached_prompt_tokens == len(ids) - 1
    assert hit.finish.usage.prompt_tokens == len(ids)
    assert hit.ids == miss.ids == alone.ids
    assert len(alone.ids) > 4


async def test_a_prompt_that_extends_a_cached_one_reuses_its_whole_blocks_only(
    model_dir: Path,
) -> None:
    first = "The capital city of France is Paris. The capital of Japan is"
    second = first + " Tokyo, and the model writes a story"
    block = 5
    async with running(model_dir) as backend:
        first_ids, second_ids = prompt_ids(backend, first), prompt_ids(backend, second)
        middleware = cached(backend, block)
        alone = await collect(backend, request(second, 20))
        await through(middleware, request(first, 4))
        hit = await through(middleware, request(second, 20))
    common = next(
        (i for i, (a, b) in enumerate(zip(first_ids, second_ids, strict=False)) if a != b),
        min(len(first_ids), len(second_ids)),
    )
    expected = common // block * block
    # Both prompts end in a partial block: the first's is not cached, the second's prefilled.
    assert len(first_ids) % block != 0 and len(second_ids) % block != 0
    assert expected > 0
    assert hit.finish.usage.cached_prompt_tokens == expected
    assert hit.ids == alone.ids


async def test_chats_sharing_a_system_prompt_reuse_it_and_answer_as_without_the_cache(
    model_dir: Path,
) -> None:
    async with running(model_dir) as backend:
        alone = [await collect(backend, chat(q)) for q in QUESTIONS]
        middleware = cached(backend, 8)
        results = [await through(middleware, chat(q)) for q in QUESTIONS]
        stats = middleware.stats
    assert [r.ids for r in results] == [a.ids for a in alone]
    assert results[0].finish.usage.cached_prompt_tokens == 0
    assert all(r.finish.usage.cached_prompt_tokens >= 32 for r in results[1:])
    assert stats.requests == 3 and stats.hits == 2
    assert stats.cache.queries == 3 and stats.cache.hits == 2


async def test_concurrent_requests_sharing_a_prefix_answer_as_they_do_alone(
    model_dir: Path,
) -> None:
    async with running(model_dir, max_batch=4) as backend:
        alone = [await collect(backend, chat(q, 12)) for q in QUESTIONS]
        middleware = cached(backend, 8)
        results: dict[int, Result] = {}

        async def one(index: int, question: str) -> None:
            results[index] = await through(middleware, chat(question, 12))

        async with anyio.create_task_group() as tg:
            for index, question in enumerate(QUESTIONS * 2):
                tg.start_soon(one, index, question)
        again = await through(middleware, chat(QUESTIONS[0], 12))
    for index, question in enumerate(QUESTIONS * 2):
        assert results[index].ids == alone[QUESTIONS.index(question)].ids
    assert again.ids == alone[0].ids
    assert again.finish.usage.cached_prompt_tokens > 0


async def test_a_hit_while_others_decode_leaves_their_tokens_unchanged(model_dir: Path) -> None:
    others = ("Once upon a time there was a tiny robot", "Numbers: 1 2 3")
    async with running(model_dir, max_batch=4) as backend:
        solo = [await collect(backend, request(p, 40)) for p in others]
        hit_alone = await collect(backend, chat(QUESTIONS[1], 16))
        middleware = cached(backend, 4)
        await through(middleware, chat(QUESTIONS[0], 4))  # fills the cache
        started = anyio.Event()
        results: dict[int, Result] = {}

        async def other(index: int, prompt: str) -> None:
            events = []
            async with aclosing(middleware(request(prompt, 40))) as stream:
                async for event in stream:
                    events.append(event)
                    if sum(isinstance(e, TokenDelta) for e in events) >= 3:
                        started.set()
            finish = events[-1]
            assert isinstance(finish, Finish)
            deltas = tuple(e for e in events if isinstance(e, TokenDelta))
            results[index] = Result(deltas, finish, tuple(events))

        async def hitter() -> None:
            await started.wait()
            assert backend.stats.running >= 1
            results[-1] = await through(middleware, chat(QUESTIONS[1], 16))

        async with anyio.create_task_group() as tg:
            for index, prompt in enumerate(others):
                tg.start_soon(other, index, prompt)
            tg.start_soon(hitter)
    assert [results[i].ids for i in range(len(others))] == [s.ids for s in solo]
    assert results[-1].finish.usage.cached_prompt_tokens > 0
    assert results[-1].ids == hit_alone.ids


async def test_the_cache_holds_whole_blocks_of_kv_within_its_byte_budget(model_dir: Path) -> None:
    block = 4
    async with running(model_dir) as backend:
        kv = backend.manifest.kv
        block_bytes = 2 * kv.num_layers * kv.num_kv_heads * kv.head_size * 4 * block
        cache = PromptCache(max_bytes=5 * block_bytes, block_tokens=block)
        middleware = PromptCacheMiddleware(backend.generate, cache=cache)
        first, second = "Once upon a time there was a tiny robot", "def main(): print hello world"
        await through(middleware, request(first, 2))
        assert cache.nbytes == 5 * block_bytes  # the prompt's head that fits
        blocks = cache.lookup(prompt_ids(backend, first), namespace=backend.prefix_namespace).blocks
        assert len(blocks) == 5
        assert all(
            b.kv.shape == (2 * kv.num_layers, kv.num_kv_heads, block, kv.head_size) for b in blocks
        )
        await through(middleware, request(second, 2))
        assert cache.nbytes <= 5 * block_bytes
        assert cache.stats.evicted_blocks > 0
        hit = await through(middleware, request(second, 2))
    assert hit.finish.usage.cached_prompt_tokens > 0


async def test_cached_kv_is_a_copy_that_later_steps_never_touch(model_dir: Path) -> None:
    async with running(model_dir) as backend:
        cache = PromptCache(max_bytes=1 << 24, block_tokens=4)
        middleware = PromptCacheMiddleware(backend.generate, cache=cache)
        prompt = "Once upon a time there was a tiny robot"
        await through(middleware, request(prompt, 2))
        before = [
            b.kv.copy()
            for b in cache.lookup(
                prompt_ids(backend, prompt), namespace=backend.prefix_namespace
            ).blocks
        ]
        # Another sequence takes the same slot and decodes over those positions.
        await collect(backend, request("Unicode: café naïve résumé and more words", 30))
        await through(middleware, request(prompt, 8))
        after = [
            b.kv
            for b in cache.lookup(
                prompt_ids(backend, prompt), namespace=backend.prefix_namespace
            ).blocks
        ]
    assert len(before) == len(after) > 0
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


async def test_without_a_cache_nothing_is_reported_cached(model_dir: Path) -> None:
    async with running(model_dir) as backend:
        results = [await collect(backend, request("Numbers: 1 2 3", 4)) for _ in range(2)]
    assert [r.finish.usage.cached_prompt_tokens for r in results] == [0, 0]


async def test_the_prefill_note_counts_the_cached_prefix_as_the_usage_does(
    model_dir: Path,
) -> None:
    prompt = "Once upon a time there was a tiny robot"
    async with running(model_dir) as backend:
        middleware = PromptCacheMiddleware(
            backend.generate, cache=PromptCache(max_bytes=1 << 24, block_tokens=4)
        )
        await through(middleware, request(prompt, 2))
        hit = await through(middleware, request(prompt, 2))
    usage = hit.finish.usage
    prefill = next(e for e in hit.events if isinstance(e, Progress) and e.phase == "prefill")
    assert usage.cached_prompt_tokens > 0
    assert (prefill.prompt_tokens, prefill.cached_prompt_tokens) == (
        usage.prompt_tokens,
        usage.cached_prompt_tokens,
    )
