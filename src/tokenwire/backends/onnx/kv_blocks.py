"""Copying KV between a sequence and prefix-cache blocks, on the host.

A block is one array `[tensors, kv_heads, block_tokens, head_size]`, tensors in
`tensor_names` order (each layer's key, then its value). Blocks are always copies: the
cache's arrays are never bound to the graph, so no sequence can write into another's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def write_blocks(rows: Sequence[np.ndarray], blocks: Sequence[np.ndarray]) -> None:
    """Copy `blocks`, in order, into the leading positions of `rows` (each `[heads, ctx, head]`).

    `rows` are views of one slot's buffers, so the copy lands in place.
    """
    count, block_tokens = len(blocks), blocks[0].shape[2]
    for t, row in enumerate(rows):
        heads, _, head = row.shape
        target = row[:, : count * block_tokens].reshape(heads, count, block_tokens, head)
        if not np.may_share_memory(target, row):
            raise ValueError("the KV rows are not laid out so that blocks can be written in place")
        np.stack([block[t] for block in blocks], axis=1, out=target)


def read_blocks(
    rows: Sequence[np.ndarray], start: int, count: int, block_tokens: int
) -> list[np.ndarray]:
    """Copies of `count` blocks of `rows` (each `[heads, length, head]`) from position `start`."""
    heads, _, head = rows[0].shape
    blocks = [
        np.empty((len(rows), heads, block_tokens, head), dtype=rows[0].dtype) for _ in range(count)
    ]
    end = start + count * block_tokens
    for t, row in enumerate(rows):
        source = row[:, start:end].reshape(heads, count, block_tokens, head)
        for i, block in enumerate(blocks):
            block[t] = source[:, i]
    return blocks


def join_blocks(blocks: Sequence[np.ndarray], length: int) -> list[np.ndarray]:
    """One contiguous `[1, heads, length, head]` array per tensor, from `blocks` in order."""
    joined = np.concatenate(blocks, axis=2)[:, :, :length]
    return [np.ascontiguousarray(tensor[None]) for tensor in joined]
