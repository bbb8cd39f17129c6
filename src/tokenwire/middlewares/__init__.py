"""Built-in stream middlewares."""

from tokenwire.middlewares.cancellation import CancellationMiddleware, CancelRegistry
from tokenwire.middlewares.metrics import MetricsMiddleware
from tokenwire.middlewares.prompt_cache import PromptCacheMiddleware, PromptCacheStats

__all__ = [
    "CancelRegistry",
    "CancellationMiddleware",
    "MetricsMiddleware",
    "PromptCacheMiddleware",
    "PromptCacheStats",
]
