"""Owns a backend's lifetime: started by the lifespan, or lazily when the app is mounted.

Starlette runs no lifespan for mounted apps, so the first request to a mounted app starts the
backend in a detached host task. Backends enter task groups in `start()` and leave them in
`close()`, so both must run in one task: the host task is that task.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Literal

import anyio
from anyio.abc import TaskGroup

from tokenwire.errors import ServiceUnavailableError
from tokenwire.events import Event
from tokenwire.interfaces import Backend, Generate
from tokenwire.pipeline import closing
from tokenwire.requests import GenerationRequest

logger = logging.getLogger("tokenwire")

State = Literal["idle", "starting", "ready", "failed", "draining", "closed"]


class _Stream:
    """A running stream, aborted at its next event when the drain grace runs out."""

    __slots__ = ("aborted",)

    def __init__(self) -> None:
        self.aborted = False


class BackendHost:
    """Starts and closes one backend and reports whether it can take requests."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.state: State = "idle"
        self._ready = anyio.Event()
        self._stop = anyio.Event()
        self._streams: set[_Stream] = set()
        self.task_group: TaskGroup | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.healthy

    @property
    def healthy(self) -> bool:
        """What the backend says of itself: an optional `healthy` attribute (a backend
        without one is always healthy), e.g. False while its model runs keep failing."""
        return bool(getattr(self.backend, "healthy", True))

    @property
    def readiness(self) -> str:
        """The state the readiness probe reports: "unhealthy" when started but failing."""
        return "unhealthy" if self.state == "ready" and not self.healthy else self.state

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the backend for the duration of the block (used by the lifespan)."""
        await self._start()
        try:
            async with self._services():
                yield
        finally:
            await self._close()

    @asynccontextmanager
    async def _services(self) -> AsyncIterator[None]:
        # Streams that outlive their connection (resumable streams) run in this task group.
        async with anyio.create_task_group() as task_group:
            self.task_group = task_group
            try:
                yield
            finally:
                task_group.cancel_scope.cancel()
                self.task_group = None

    async def ensure_started(self) -> None:
        """Start the backend if nobody has (mounted apps), then wait until it is ready.

        Raises:
            ServiceUnavailableError: the backend failed to start or is shutting down.
        """
        self.kick()
        if self.state == "starting":
            await self._ready.wait()
        if self.state != "ready":
            raise ServiceUnavailableError(f"The model backend is {self.state}; try again later.")

    def kick(self) -> None:
        """Start the backend in a detached host task if nothing has started it yet."""
        if self.state == "idle":
            self.state = "starting"
            _spawn_detached(self._host_forever)

    def drain(self) -> None:
        """Stop admitting requests (they get 503); running streams go on."""
        if self.state in ("ready", "starting", "idle"):
            self.state = "draining"

    @property
    def active_streams(self) -> int:
        return len(self._streams)

    def abort_streams(self) -> int:
        """End every running stream with an in-band "shutting down" error; returns how many."""
        for stream in self._streams:
            stream.aborted = True
        return len(self._streams)

    def guard(self, app: Generate) -> Generate:
        """Wrap the pipeline so running streams are counted and can be aborted at shutdown."""

        async def guarded(request: GenerationRequest) -> AsyncIterator[Event]:
            stream = _Stream()
            self._streams.add(stream)
            try:
                # The abort flag is read between events: a cancel scope per event costs
                # more than a token's whole trip through the transport.
                async with closing(app(request)) as events:
                    async for event in events:
                        if stream.aborted:
                            raise ServiceUnavailableError(
                                "The server is shutting down and could not finish this "
                                "stream in time."
                            )
                        yield event
            finally:
                self._streams.discard(stream)

        return guarded

    async def _start(self) -> None:
        self.state = "starting"
        try:
            await self.backend.start()
        except BaseException:
            self.state = "failed"
            self._ready.set()
            raise
        self.state = "ready"
        self._ready.set()

    async def _close(self) -> None:
        self.state = "closed"
        self._stop.set()
        await self.backend.close()

    async def _host_forever(self) -> None:
        try:
            await self._start()
        except Exception:
            logger.exception("backend %r failed to start", self.backend.model_id)
            return
        try:
            async with self._services():
                await self._stop.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await self.backend.close()

    async def aclose(self) -> None:
        """Stop a detached host (mounted apps have no lifespan to do it)."""
        self._stop.set()


def _spawn_detached(fn: Callable[[], Coroutine[object, object, None]]) -> None:
    # Do not fix: there is no structured owner for a mounted app's backend. The host task
    # owns the backend's own task group, so everything below it is still structured.
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "a mounted tokenwire app runs on asyncio only; use the lifespan"
        ) from None
    task = loop.create_task(fn())
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)


_DETACHED: set[object] = set()  # keeps detached tasks from being garbage-collected
