"""Compose middlewares around a backend, outermost first, as Starlette builds its stack."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from tokenwire.interfaces import Generate, MiddlewareFactory

_T = TypeVar("_T")


def build_layers(app: Generate, middlewares: Sequence[MiddlewareFactory] = ()) -> list[Generate]:
    """Every layer of the pipeline, outermost first: `layers[0]` is the pipeline, the last
    one is `app`. The app reads the middleware instances' declared capabilities from here."""
    layers = [app]
    for factory in reversed(middlewares):
        layers.append(factory(layers[-1]))
    layers.reverse()
    return layers


def build_pipeline(app: Generate, middlewares: Sequence[MiddlewareFactory] = ()) -> Generate:
    """Wrap `app` (usually `backend.generate`) so that `middlewares[0]` sees requests first.

    Args:
        app: the innermost `Generate`.
        middlewares: factories called as `factory(inner)`; a class or a `functools.partial`.
    """
    return build_layers(app, middlewares)[0]


@asynccontextmanager
async def closing(stream: AsyncIterator[_T]) -> AsyncIterator[AsyncIterator[_T]]:
    """Close `stream` on exit when it can be closed (async generators can; plain iterators
    may not). Every layer that reads an inner stream reads it inside this."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
