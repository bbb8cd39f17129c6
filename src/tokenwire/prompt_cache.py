"""`PromptCache`: KV of token prefixes, in fixed blocks keyed by chained hashes, bounded in bytes.

As vLLM's automatic prefix caching: a prompt's tokens are cut into blocks of `block_tokens`;
block i's key hashes block i-1's key with block i's token ids, so a key names the whole
prefix up to the end of its block. Lookup walks the chain from the root and stops at the
first block not held: the longest cached prefix of whole blocks. The cache never looks
inside a block's KV: backends store what they can copy back (numpy arrays on the host).

The `prompt_cache` middleware puts its cache on each request (`GenerationRequest.prompt_cache`);
a backend that reuses KV reads it there, and one that cannot ignores it, so the middleware
works with any backend. This module sits below both and imports neither.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BlockStats",
    "CachedBlock",
    "PromptCache",
    "PromptMatch",
]


@dataclass(frozen=True, slots=True)
class CachedBlock:
    """One block: its chained key, its parent's, and the KV of its tokens (never mutated)."""

    key: bytes
    parent: bytes
    kv: Any
    nbytes: int


@dataclass(frozen=True, slots=True)
class PromptMatch:
    """A lookup's answer: `tokens` reusable tokens, whose KV lies in `blocks`, in order.

    The last block may hold more tokens than `tokens` reaches, when the match was capped.
    """

    tokens: int = 0
    blocks: tuple[CachedBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class BlockStats:
    """Counts since the cache was made, and what it holds now."""

    queries: int
    hits: int
    hit_tokens: int
    inserted_blocks: int
    evicted_blocks: int
    blocks: int
    bytes: int
    max_bytes: int


class PromptCache:
    """Blocks of KV by chained key; least recently used blocks leave first.

    Thread-safe: lookups run on the event loop, inserts in the backend's worker thread.
    Invariant: a block is always more recently used than the blocks that extend it (chains
    are touched deepest block first, root last), so eviction takes the tail of a prefix
    before its head and never strands a reachable block behind a missing parent.

    Args:
        max_bytes: the most KV bytes held; 0 holds nothing.
        block_tokens: tokens per block; only whole blocks are cached.
    """

    def __init__(self, max_bytes: int, block_tokens: int = 16) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if block_tokens < 1:
            raise ValueError(f"block_tokens must be >= 1, got {block_tokens}")
        self.max_bytes = int(max_bytes)
        self.block_tokens = int(block_tokens)
        self._blocks: OrderedDict[bytes, CachedBlock] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._queries = self._hits = self._hit_tokens = 0
        self._inserted = self._evicted = 0

    def keys(self, token_ids: Sequence[int] | np.ndarray, *, namespace: str = "") -> list[bytes]:
        """The chained key of every whole block of `token_ids`.

        `namespace` seeds the chain (the backend's model), so one cache never hands one
        model's KV to another. SHA-256, as vLLM moved to: a prompt must not be able to
        forge a collision with another user's prefix.
        """
        ids = np.asarray(token_ids, dtype="<i8")
        parent = hashlib.sha256(namespace.encode()).digest()
        keys = []
        for start in range(0, len(ids) - self.block_tokens + 1, self.block_tokens):
            parent = hashlib.sha256(
                parent + ids[start : start + self.block_tokens].tobytes()
            ).digest()
            keys.append(parent)
        return keys

    def lookup(
        self,
        token_ids: Sequence[int] | np.ndarray,
        *,
        namespace: str = "",
        limit: int | None = None,
    ) -> PromptMatch:
        """The longest cached prefix of whole blocks, capped at `limit` tokens; counts a query."""
        keys = self.keys(token_ids, namespace=namespace)
        with self._lock:
            blocks = []
            for key in keys:
                block = self._blocks.get(key)
                if block is None:
                    break
                blocks.append(block)
            tokens = len(blocks) * self.block_tokens
            if limit is not None and tokens > limit:
                tokens = max(0, limit)
                blocks = blocks[: -(-tokens // self.block_tokens)]
            self._queries += 1
            if tokens:
                self._hits += 1
                self._hit_tokens += tokens
                self._touch([b.key for b in blocks])
            return PromptMatch(tokens, tuple(blocks))

    def insert(
        self,
        token_ids: Sequence[int] | np.ndarray,
        copy_blocks: Callable[[int, int], Sequence[Any]],
        *,
        block_bytes: int,
        namespace: str = "",
    ) -> int:
        """Offer the whole blocks of `token_ids`; returns how many were added.

        `copy_blocks(first, count)` returns copies of the KV of blocks `[first, first +
        count)`; it is called (outside the lock) only for blocks the cache lacks, so a
        prompt whose prefix is already held costs no copy. Blocks that do not fit the
        budget without evicting this prompt's own earlier blocks are left out.
        """
        keys = self.keys(token_ids, namespace=namespace)
        room = self.max_bytes // block_bytes if block_bytes > 0 else len(keys)
        keys = keys[:room]
        with self._lock:
            first = next((i for i, key in enumerate(keys) if key not in self._blocks), len(keys))
        if first == len(keys):
            with self._lock:
                self._touch(keys)
            return 0
        copies = copy_blocks(first, len(keys) - first)
        if len(copies) != len(keys) - first:
            raise ValueError(
                f"copy_blocks returned {len(copies)} blocks, {len(keys) - first} asked"
            )
        added = 0
        root = hashlib.sha256(namespace.encode()).digest()
        with self._lock:
            chain = set(keys)
            self._touch(keys[:first])  # the held head of the prompt must not make the room
            for index in range(first, len(keys)):
                key = keys[index]
                if key in self._blocks:
                    continue
                parent = keys[index - 1] if index else root
                # A parent evicted meanwhile would leave this block unreachable.
                if (index and parent not in self._blocks) or not self._make_room(
                    block_bytes, protect=chain
                ):
                    keys = keys[:index]
                    break
                self._blocks[key] = CachedBlock(key, parent, copies[index - first], block_bytes)
                self._bytes += block_bytes
                added += 1
            self._inserted += added
            self._touch(keys)
        return added

    def _make_room(self, nbytes: int, *, protect: set[bytes]) -> bool:
        while self._bytes + nbytes > self.max_bytes:
            if not self._blocks:
                return False
            oldest = next(iter(self._blocks))
            if oldest in protect:
                return False
            block = self._blocks.pop(oldest)
            self._bytes -= block.nbytes
            self._evicted += 1
        return True

    def _touch(self, chain: Sequence[bytes]) -> None:
        # Deepest first, root last: the root becomes the most recently used (see the class
        # invariant).
        for key in reversed(chain):
            if key in self._blocks:
                self._blocks.move_to_end(key)

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._bytes = 0

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._blocks

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def lru_keys(self) -> list[bytes]:
        """Keys from least to most recently used (the eviction order)."""
        with self._lock:
            return list(self._blocks)

    @property
    def stats(self) -> BlockStats:
        with self._lock:
            return BlockStats(
                queries=self._queries,
                hits=self._hits,
                hit_tokens=self._hit_tokens,
                inserted_blocks=self._inserted,
                evicted_blocks=self._evicted,
                blocks=len(self._blocks),
                bytes=self._bytes,
                max_bytes=self.max_bytes,
            )
