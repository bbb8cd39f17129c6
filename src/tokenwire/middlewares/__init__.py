"""Built-in stream middlewares."""

from tokenwire.middlewares.cancellation import CancellationMiddleware, CancelRegistry
from tokenwire.middlewares.metrics import MetricsMiddleware

__all__ = ["CancelRegistry", "CancellationMiddleware", "MetricsMiddleware"]
