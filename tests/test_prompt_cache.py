"""PromptCache: chained block keys, longest-prefix lookup, byte budget and LRU eviction."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import pytest

from tokenwire.prompt_cache import (
    PromptCache,
)
from tokenwire.requests import GenerationRequest

BLOCK = 4
BYTES = 100  # per block


class Copier:
    """A `copy_blocks` callback that records what it was asked for; KV is (prompt tag, index)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.calls: list[tuple[int, int]] = []

    def __call__(self, first: int, count: int) -> list[tuple[str, int]]:
        self.calls.append((first, count))
        return [(self.tag, i) for i in range(first, first + count)]


def offer(cache: PromptCache, ids: Sequence[int], tag: str = "p", **kwargs: str) -> Copier:
    copier = Copier(tag)
    cache.insert(ids, copier, block_bytes=BYTES, **kwargs)
    return copier


def ids(start: int, count: int) -> list[int]:
    return list(range(start, start + count))


def test_an_empty_cache_misses_and_counts_the_query() -> None:
    cache = PromptCache(10_000, BLOCK)
    match = cache.lookup(ids(0, 12))
    assert match.tokens == 0 and match.blocks == ()
    assert cache.stats.queries == 1 and cache.stats.hits == 0


def test_a_prompt_offered_back_is_found_in_whole_blocks_only() -> None:
    cache = PromptCache(10_000, BLOCK)
    copier = offer(cache, ids(0, 10))  # two whole blocks and a partial one
    assert copier.calls == [(0, 2)]
    match = cache.lookup(ids(0, 10))
    assert match.tokens == 8
    assert [b.kv for b in match.blocks] == [("p", 0), ("p", 1)]
    assert cache.stats.hits == 1 and cache.stats.hit_tokens == 8
    assert cache.nbytes == 2 * BYTES


def test_a_longer_prompt_reuses_the_shared_prefix_and_only_its_new_blocks_are_copied() -> None:
    cache = PromptCache(10_000, BLOCK)
    offer(cache, ids(0, 8))
    longer = [*ids(0, 8), 50, 51, 52, 53, 54]
    assert cache.lookup(longer).tokens == 8
    copier = offer(cache, longer, tag="q")
    assert copier.calls == [(2, 1)]
    match = cache.lookup(longer)
    assert match.tokens == 12
    assert [b.kv for b in match.blocks] == [("p", 0), ("p", 1), ("q", 2)]


def test_an_already_held_prompt_costs_no_copy() -> None:
    cache = PromptCache(10_000, BLOCK)
    offer(cache, ids(0, 8))
    assert offer(cache, ids(0, 8)).calls == []
    assert cache.stats.inserted_blocks == 2


def test_the_same_block_tokens_under_a_different_prefix_do_not_match() -> None:
    cache = PromptCache(10_000, BLOCK)
    offer(cache, [1, 2, 3, 4, 5, 6, 7, 8])
    assert cache.lookup([9, 9, 9, 9, 5, 6, 7, 8]).tokens == 0
    assert cache.lookup([1, 2, 3, 4, 5, 6, 7, 9]).tokens == 4
    assert cache.keys([1, 2, 3, 4, 5, 6, 7, 8])[1] != cache.keys([9, 9, 9, 9, 5, 6, 7, 8])[1]


def test_a_namespace_keeps_models_apart() -> None:
    cache = PromptCache(10_000, BLOCK)
    offer(cache, ids(0, 8), namespace="model-a")
    assert cache.lookup(ids(0, 8), namespace="model-b").tokens == 0
    assert cache.lookup(ids(0, 8), namespace="model-a").tokens == 8


def test_a_limit_caps_the_match_and_keeps_the_block_that_covers_it() -> None:
    cache = PromptCache(10_000, BLOCK)
    offer(cache, ids(0, 8))
    match = cache.lookup(ids(0, 8), limit=7)
    assert match.tokens == 7 and len(match.blocks) == 2
    match = cache.lookup(ids(0, 8), limit=4)
    assert match.tokens == 4 and len(match.blocks) == 1
    assert cache.lookup(ids(0, 8), limit=0).tokens == 0


def test_the_byte_budget_evicts_the_least_recently_used_prompt() -> None:
    cache = PromptCache(4 * BYTES, BLOCK)
    offer(cache, ids(0, 8), tag="a")
    offer(cache, ids(100, 8), tag="b")
    assert cache.lookup(ids(0, 8)).tokens == 8  # a is now the most recently used
    offer(cache, ids(200, 8), tag="c")
    assert cache.nbytes == 4 * BYTES
    assert cache.lookup(ids(100, 8)).tokens == 0  # b went
    assert cache.lookup(ids(0, 8)).tokens == 8
    assert cache.lookup(ids(200, 8)).tokens == 8
    assert cache.stats.evicted_blocks == 2


def test_eviction_takes_the_tail_of_a_prefix_before_its_head() -> None:
    cache = PromptCache(3 * BYTES, BLOCK)
    offer(cache, ids(0, 12), tag="a")
    first = cache.keys(ids(0, 12))
    assert cache.lru_keys() == list(reversed(first))
    offer(cache, ids(100, 4), tag="b")  # needs one block: a's last goes
    assert cache.lookup(ids(0, 12)).tokens == 8
    assert first[2] not in cache and first[0] in cache


def test_a_prompt_larger_than_the_budget_keeps_the_head_that_fits() -> None:
    cache = PromptCache(3 * BYTES, BLOCK)
    copier = offer(cache, ids(0, 20))
    assert copier.calls == [(0, 3)]
    assert cache.lookup(ids(0, 20)).tokens == 12
    offer(cache, ids(0, 20))  # its own head is never evicted to make room for its tail
    assert cache.lookup(ids(0, 20)).tokens == 12


def test_a_zero_budget_holds_nothing() -> None:
    cache = PromptCache(0, BLOCK)
    offer(cache, ids(0, 8))
    assert len(cache) == 0 and cache.lookup(ids(0, 8)).tokens == 0


def test_a_block_whose_parent_was_evicted_meanwhile_is_not_added() -> None:
    cache = PromptCache(10_000, BLOCK)
    offer(cache, ids(0, 4))

    def evict_then_copy(first: int, count: int) -> list[int]:
        cache.clear()  # another thread's eviction, between the check and the copy
        return list(range(count))

    assert cache.insert(ids(0, 8), evict_then_copy, block_bytes=BYTES) == 0
    assert len(cache) == 0


def test_concurrent_inserts_and_lookups_keep_the_accounting_exact() -> None:
    cache = PromptCache(40 * BYTES, BLOCK)

    def work(seed: int) -> None:
        for i in range(200):
            prompt = [seed % 3, *ids(1000 * (i % 7), 4 * (1 + i % 5))]
            cache.lookup(prompt)
            cache.insert(prompt, Copier(str(seed)), block_bytes=BYTES)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.nbytes == len(cache) * BYTES <= 40 * BYTES
    assert cache.stats.queries == 6 * 200


def test_a_cache_on_a_request_is_no_part_of_its_value() -> None:
    plain = GenerationRequest(model="m", prompt="hi", request_id="r")
    carrying = replace(plain, prompt_cache=PromptCache(10, BLOCK))
    assert carrying == plain and repr(carrying) == repr(plain)


@pytest.mark.parametrize(("max_bytes", "block_tokens"), [(-1, 16), (100, 0)])
def test_bad_sizes_are_refused_with_the_value(max_bytes: int, block_tokens: int) -> None:
    with pytest.raises(ValueError, match=str(min(max_bytes, block_tokens))):
        PromptCache(max_bytes, block_tokens)
