"""`cancellation`: deadlines and explicit cancel by request id.

Client disconnects need nothing here: the transport cancels the stream it reads, and the
cancellation reaches the backend through every layer. This middleware adds the two causes a
transport cannot see: a deadline passing, and `DELETE /v1/requests/{id}` (for proxies that
hide disconnects from the server). With a shared stream store the route also reaches requests
running on other replicas (the app hands it `cancel_elsewhere`).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tokenwire.errors import DeadlineExceededError, TokenwireError
from tokenwire.events import Event, Finish, TokenDelta, Usage
from tokenwire.interfaces import Generate
from tokenwire.pipeline import closing
from tokenwire.requests import GenerationRequest


@dataclass(eq=False, slots=True)
class _Running:
    """One running request; `scope` is set only while the inner stream is being awaited."""

    cancelled: bool = False
    scope: anyio.CancelScope | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


@dataclass(slots=True)
class CancelRegistry:
    """Running requests by id. Ids come from clients too, so one id may name several."""

    running: dict[str, set[_Running]] = field(default_factory=dict)

    def cancel(self, request_id: str) -> int:
        """Cancel every running request with this id; returns how many there were."""
        entries = self.running.get(request_id, set())
        for entry in entries:
            entry.cancel()
        return len(entries)


class CancellationMiddleware:
    """Ends a stream when its deadline passes or when it is cancelled by id.

    Args:
        app: the next `Generate`.
        default_timeout: seconds allowed to a request that asks for no deadline (None: none).
        max_timeout: the longest deadline a request may ask for, in seconds (None: no cap).
        registry: where running requests are found by id (a fresh one by default).
    """

    def __init__(
        self,
        app: Generate,
        *,
        default_timeout: float | None = None,
        max_timeout: float | None = 600.0,
        registry: CancelRegistry | None = None,
    ) -> None:
        self.app = app
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        self.registry = registry or CancelRegistry()
        self.cancel_elsewhere: Callable[[str], Awaitable[bool]] | None = None
        self.routes: list[BaseRoute] = [
            Route("/v1/requests/{request_id}", self._cancel_route, methods=["DELETE"])
        ]

    def _deadline(self, request: GenerationRequest) -> float:
        now = anyio.current_time()
        deadline = request.deadline
        if deadline is None and self.default_timeout is not None:
            deadline = now + self.default_timeout
        if self.max_timeout is not None:
            deadline = min(deadline if deadline is not None else math.inf, now + self.max_timeout)
        return math.inf if deadline is None else deadline

    async def __call__(self, request: GenerationRequest) -> AsyncIterator[Event]:
        started = anyio.current_time()
        deadline = self._deadline(request)
        entry = _Running()
        self.registry.running.setdefault(request.request_id, set()).add(entry)
        generated = 0
        try:
            async with closing(self.app(request)) as events:
                while not entry.cancelled:
                    # The scope lives only while awaiting the next event, never across a
                    # yield: cancelling it throws into the inner stream, which ends it.
                    with anyio.CancelScope(deadline=deadline) as scope:
                        entry.scope = scope
                        try:
                            event = await events.__anext__()
                        except StopAsyncIteration:
                            return
                        finally:
                            entry.scope = None
                    if scope.cancelled_caught:
                        break
                    if isinstance(event, TokenDelta):
                        generated += max(1, len(event.token_ids))
                    yield event
                    if isinstance(event, Finish):
                        return
            if entry.cancelled:
                yield Finish("cancelled", Usage(completion_tokens=generated))
                return
            raise DeadlineExceededError(
                f"The request ran past its deadline of {deadline - started:.3g} seconds."
            )
        finally:
            entries = self.registry.running.get(request.request_id)
            if entries is not None:
                entries.discard(entry)
                if not entries:
                    del self.registry.running[request.request_id]

    def cancel_here(self, request_id: str) -> int:
        return self.registry.cancel(request_id)

    def reach_replicas(self, cancel_elsewhere: Callable[[str], Awaitable[bool]]) -> None:
        self.cancel_elsewhere = cancel_elsewhere

    async def _cancel_route(self, request: Request) -> Response:
        request_id = request.path_params["request_id"]
        found = self.registry.cancel(request_id) > 0
        if not found and self.cancel_elsewhere is not None:
            try:
                found = await self.cancel_elsewhere(request_id)
            except TokenwireError as exc:  # the replicas cannot be asked now: not a 404
                error = {"message": exc.message, "type": "server_error"}
                return JSONResponse({"error": error}, status_code=exc.status_code)
        if not found:
            error = {
                "message": f"No running request has the id {request_id!r}.",
                "type": "not_found_error",
            }
            return JSONResponse({"error": error}, status_code=404)
        return JSONResponse({"id": request_id, "cancelled": True})
