"""Compose middlewares around a backend, outermost first, as Starlette builds its stack."""

from __future__ import annotations

from collections.abc import Sequence

from tokenwire.interfaces import Generate, MiddlewareFactory


def build_pipeline(app: Generate, middlewares: Sequence[MiddlewareFactory] = ()) -> Generate:
    """Wrap `app` (usually `backend.generate`) so that `middlewares[0]` sees requests first.

    Args:
        app: the innermost `Generate`.
        middlewares: factories called as `factory(inner)`; a class or a `functools.partial`.
    """
    for factory in reversed(middlewares):
        app = factory(app)
    return app
