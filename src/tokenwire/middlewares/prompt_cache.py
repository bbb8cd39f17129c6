"""`prompt_cache`: reuse the KV of prompt prefixes seen before (prefix caching).

The middleware owns a `PromptCache` (bounded in bytes, LRU) and hands it down on the request
(`GenerationRequest.prompt_cache`): a middleware sees only the next `Generate`, which may be
another middleware, so the request is the one thing that reaches the backend. A backend that
can reuse KV (the ONNX backend on the host) looks the prompt up, skips prefilling the matched
blocks and reports them as `Usage.cached_prompt_tokens`; any other backend ignores the field,
and the middleware changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from tokenwire.events import Event, Finish
from tokenwire.interfaces import Generate
from tokenwire.pipeline import closing
from tokenwire.prompt_cache import BlockStats, PromptCache
from tokenwire.requests import GenerationRequest

__all__ = ["DEFAULT_MAX_BYTES", "PromptCacheMiddleware", "PromptCacheStats"]

DEFAULT_MAX_BYTES = 1 << 30
"""1 GiB: about 23,000 tokens of SmolLM2-135M's KV (46 KiB per token in fp32)."""


@dataclass(frozen=True, slots=True)
class PromptCacheStats:
    """Finished requests that passed, those that reused a prefix, the tokens reused, and
    the cache's own counts."""

    requests: int
    hits: int
    cached_tokens: int
    cache: BlockStats


class PromptCacheMiddleware:
    """Offers a prefix cache to the backend; counts the hits its requests report.

    Args:
        app: the next `Generate`.
        max_bytes: the most KV bytes the cache holds (least recently used blocks leave first).
        block_tokens: tokens per cached block; a prompt reuses whole blocks only.
        cache: a cache to use instead of a new one (e.g. shared by two pipelines of one
            backend, or inspected by tests).
    """

    def __init__(
        self,
        app: Generate,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        block_tokens: int = 16,
        cache: PromptCache | None = None,
    ) -> None:
        self.app = app
        self.cache = cache if cache is not None else PromptCache(max_bytes, block_tokens)
        self._requests = self._hits = self._cached_tokens = 0

    @property
    def cache_bytes(self) -> int:
        """KV bytes the cache holds now (`HoldsCache`, exported by the metrics middleware)."""
        return self.cache.nbytes

    @property
    def cache_budget(self) -> int:
        return self.cache.max_bytes

    @property
    def cache_block_tokens(self) -> int:
        return self.cache.block_tokens

    @property
    def stats(self) -> PromptCacheStats:
        return PromptCacheStats(self._requests, self._hits, self._cached_tokens, self.cache.stats)

    async def __call__(self, request: GenerationRequest) -> AsyncIterator[Event]:
        async with closing(self.app(replace(request, prompt_cache=self.cache))) as events:
            async for event in events:
                if isinstance(event, Finish):
                    self._count(event)
                yield event

    def _count(self, finish: Finish) -> None:
        self._requests += 1
        if finish.usage.cached_prompt_tokens > 0:
            self._hits += 1
            self._cached_tokens += finish.usage.cached_prompt_tokens
