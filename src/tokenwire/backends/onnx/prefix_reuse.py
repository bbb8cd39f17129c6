"""The prompt cache on the decode loop's side: an admitted request's longest cached prefix
found (on the loop) and, after its prompt ran, its new whole blocks copied out of the slot
(in the worker).

The KV blocks of a match are copied into the slot just before the request's first chunk
(`DecodeLoop._prefill_step`), so only the rest of the prompt is prefilled.
"""

from __future__ import annotations

import logging

import numpy as np

from tokenwire.backends.onnx.generation import Generation
from tokenwire.backends.onnx.runner import ModelRunner

logger = logging.getLogger("tokenwire.onnx")


def match_prefix(generation: Generation, namespace: str) -> None:
    """Note `generation`'s longest cached prefix (its `reuse`, counted as prefilled)."""
    cache = generation.prompt_cache
    if cache is None:
        return
    # At least the last prompt token is prefilled: its logits give the first token.
    match = cache.lookup(
        generation.prompt_ids, namespace=namespace, limit=generation.prompt_tokens - 1
    )
    if match.tokens:
        generation.reuse = match
        generation.prefilled = generation.cached_tokens = match.tokens


def offer_prefix(
    runner: ModelRunner, generation: Generation, namespace: str, kv_token_bytes: int
) -> None:
    """Copy `generation`'s prompt blocks the cache lacks out of its slot (in the worker)."""
    cache, slot = generation.prompt_cache, generation.slot
    assert cache is not None and slot is not None
    size = cache.block_tokens

    def copy(first: int, count: int) -> list[np.ndarray]:
        return runner.snapshot(slot, first * size, count, size)

    try:
        cache.insert(
            generation.prompt_ids, copy, block_bytes=kv_token_bytes * size, namespace=namespace
        )
    except Exception:
        # The cache is an optimisation: failing to fill it must not fail the request.
        logger.exception("offering prompt blocks to the prefix cache failed")
