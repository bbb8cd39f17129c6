"""The stored-response routes of the Responses API: `GET` and `DELETE /v1/responses/{id}`
(`?stream=true&starting_after=N` replays a background response's events, then goes live) and
`POST /v1/responses/{id}/cancel`.

Stored responses come from the `ResponseStore` the Responses dialect writes; a background
response's events come from the `StreamStore` that `Last-Event-ID` reads, through the same
`ResumeService` that runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import anyio
from starlette.datastructures import QueryParams
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenwire.endpoint import Endpoint
from tokenwire.errors import InvalidRequestError, NotFoundError, TokenwireError
from tokenwire.interfaces import RunsDetached
from tokenwire.logs import request_id_var
from tokenwire.stores.response_store import (
    ResponseStore,
    ResponseStoreUnavailableError,
    StoredResponse,
    SyncsResponses,
)
from tokenwire.transports._replies import response_headers, send_error, send_json
from tokenwire.transports._resume import ResumeService
from tokenwire.transports.sse import SSETransport

_RUNNING = ("queued", "in_progress")
_STOPPING_SECONDS = 5.0  # how long a cancel waits for another replica to store the result


class ResponseRoutes:
    """Serves stored responses of `store`; `service` runs and replays background ones;
    `endpoint` (the Responses dialect's) renders errors and frames replayed events."""

    def __init__(self, store: ResponseStore, service: ResumeService, endpoint: Endpoint) -> None:
        self.store = store
        self.service = service
        self.endpoint = endpoint
        self.sse = SSETransport()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/responses/{response_id}", _App(self._response), methods=["GET", "DELETE"]),
            Route("/v1/responses/{response_id}/cancel", _App(self._cancel), methods=["POST"]),
        ]

    async def _stored(self, response_id: str, *, held_here: bool = True) -> StoredResponse:
        """The response as stored.

        Raises:
            NotFoundError: no response has this id.
            ResponseStoreUnavailableError: a shared store cannot say (see `SyncsResponses`).
        """
        if isinstance(self.store, SyncsResponses):
            # As the replica that stored it left it.
            await self.store.load(response_id, held_here=held_here)
        stored = self.store.get(response_id)
        if stored is None:
            raise NotFoundError(
                f"Response with id {response_id[:100]!r} not found.", param="response_id"
            )
        return stored

    def _current(self, stored: StoredResponse) -> Mapping[str, Any]:
        """The response as it stands: a running one's output so far, else as stored."""
        call = self.service.live.get(stored.request_id)
        if call is not None and isinstance(call.exchange, RunsDetached):
            return call.exchange.snapshot()
        return stored.response

    async def _response(self, scope: Scope, receive: Receive, send: Send) -> None:
        response_id = scope["path_params"]["response_id"]
        try:
            deleting = scope["method"] == "DELETE"
            # A delete must reach every replica: no answer from what this one holds alone.
            stored = await self._stored(response_id, held_here=not deleting)
            if deleting:
                if not await self.service.cancel_detached(stored.request_id):
                    await self._stop_elsewhere(stored)  # else its owner would store it again
                self.store.delete(response_id)
                # Gone on every replica before the reply; Redis, the truth, keeps it otherwise.
                if isinstance(self.store, SyncsResponses) and not await self.store.flush():
                    raise ResponseStoreUnavailableError(
                        f"Response {response_id[:100]!r} was not deleted: the response store "
                        "shared by every replica is unreachable; try again."
                    )
                reply: Mapping[str, Any] = {
                    "id": response_id,
                    "object": "response",
                    "deleted": True,
                }
                await send_json(send, 200, reply, response_headers(scope))
                return
            query = QueryParams(scope["query_string"])
            if not _flag(query, "stream"):
                await send_json(send, 200, self._current(stored), response_headers(scope))
                return
            start = _starting_after(query) + 1
            if not stored.background:
                raise InvalidRequestError(
                    "Only responses created with background=true can be streamed by "
                    "retrieving them; this one's stream went to the client that created it.",
                    param="stream",
                )
            try:
                _, payloads = await self.service.open(stored.request_id, start)
            except NotFoundError:
                raise NotFoundError(
                    f"The events of response {response_id[:100]!r} after {start - 1} are no "
                    "longer kept; retrieve it without stream=true for the response itself.",
                    param="starting_after",
                ) from None
        except TokenwireError as error:
            await send_error(scope, send, self.endpoint, error)
            return
        # The replayed events carry the stream's own ids, as a Last-Event-ID resume does.
        scope["state"]["request_id"] = stored.request_id
        request_id_var.set(stored.request_id)
        start_of = self.service.start_of(stored.request_id)
        await self.sse.stream(payloads, scope, receive, send, self.endpoint, start_of)

    async def _cancel(self, scope: Scope, receive: Receive, send: Send) -> None:
        response_id = scope["path_params"]["response_id"]
        try:
            stored = await self._stored(response_id)
            if not stored.background:
                raise InvalidRequestError(
                    "Only responses created with background=true can be cancelled.",
                    param="response_id",
                )
            call = self.service.live.get(stored.request_id)
            if call is None:
                stopped = await self._stop_elsewhere(stored)
                if stopped is None:
                    raise InvalidRequestError(
                        f"Cannot cancel a response with status {stored.status!r}; only queued "
                        "or in_progress background responses can be cancelled.",
                        param="response_id",
                    )
                reply = stopped.response
            else:
                await self.service.cancel_detached(stored.request_id)
                reply = cast(RunsDetached, call.exchange).snapshot()
        except TokenwireError as error:
            await send_error(scope, send, self.endpoint, error)
            return
        await send_json(send, 200, reply, response_headers(scope))

    async def _stop_elsewhere(self, stored: StoredResponse) -> StoredResponse | None:
        """Stop a background response that another replica runs (shared stores only) and
        return it as its owner stored it once stopped; None when nobody runs it."""
        if (
            not isinstance(self.store, SyncsResponses)
            or stored.status not in _RUNNING
            or not await self.service.cancel(stored.request_id)
        ):
            return None
        # The owner acked the cancel; it stores the cancelled response as its stream ends.
        with anyio.move_on_after(_STOPPING_SECONDS):
            while stored.status in _RUNNING:
                await anyio.sleep(0.02)
                stored = await self._stored(stored.id)
        return stored


class _App:
    """An ASGI app that Starlette's `Route` serves as one (a bound method it would wrap as a
    request handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _flag(query: QueryParams, name: str) -> bool:
    value = query.get(name)
    if value is None or value.lower() == "false":
        return False
    if value.lower() == "true":
        return True
    raise InvalidRequestError(f"Invalid value for '{name}': true or false.", param=name)


def _starting_after(query: QueryParams) -> int:
    """`starting_after`: the sequence number after which events are sent (-1: all)."""
    value = query.get("starting_after")
    if value is None:
        return -1
    if not value.isdigit() or len(value) > 9:
        raise InvalidRequestError(
            "Invalid value for 'starting_after': a sequence number (an integer >= 0).",
            param="starting_after",
        )
    return int(value)
