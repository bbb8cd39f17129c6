"""Built-in stream middlewares."""

from tokenwire.middlewares.cancellation import CancellationMiddleware, CancelRegistry

__all__ = ["CancelRegistry", "CancellationMiddleware"]
