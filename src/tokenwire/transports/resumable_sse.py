"""Resumable SSE: a client that lost its connection reconnects and misses nothing.

With resume on, this transport takes the place of plain SSE. An OpenAI or Anthropic stream
is run by the `ResumeService` apart from its connection, which only reads it back. A client
that drops reconnects — `GET /v1/streams/{request_id}` or the same POST, with
`Last-Event-ID: <request id>:<n>` — and reads exactly the payloads after `n`, then the live
rest. A stream whose response started before its first payload (it waited in the backend's
queue; see `StreamStart`) resumes from its beginning: `GET /v1/streams/{request_id}` with no
`Last-Event-ID`, the id from the `x-request-id` header. Dialects whose SSE carries no ids (Gemini) stream as plain SSE and cancel at once, as
NDJSON and WebSocket streams do.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from tokenwire.endpoint import Call, Endpoint
from tokenwire.errors import InvalidRequestError, TokenwireError
from tokenwire.logs import request_id_var
from tokenwire.transports._calls import open_call, read_body
from tokenwire.transports._replies import request_id_of, send_error
from tokenwire.transports._resume import ResumeService, parse_last_event_id
from tokenwire.transports.sse import SSETransport


class ResumableSSETransport:
    """SSE whose streams outlive their connection, and which serves reconnects."""

    name = "sse"

    def __init__(self, service: ResumeService, sse: SSETransport | None = None) -> None:
        self.service = service
        self.sse = sse or SSETransport()

    def accepts(self, scope: Scope) -> bool:
        return self.sse.accepts(scope)

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint
    ) -> None:
        if not endpoint.dialect.sse_fields:
            await self.sse(scope, receive, send, endpoint)
            return
        last_event_id = Headers(scope=scope).get("last-event-id")
        if last_event_id:
            await self._resume(last_event_id, scope, receive, send, endpoint)
            return
        call = await open_call(scope, receive, send, endpoint, self.name)
        if call is None:
            return
        if not isinstance(call, Call):  # a background call, run by the service already
            start = self.service.start_of(request_id_of(scope))
            await self.sse.stream(call, scope, receive, send, endpoint, start)
            return
        try:
            adopted = self.service.adopt(call, request_id_of(scope), endpoint.dialect.name)
        except TokenwireError as error:
            await send_error(scope, send, endpoint, error)
            return
        await self.sse.stream(adopted or call, scope, receive, send, endpoint, call.start)

    async def _resume(
        self, last_event_id: str, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint
    ) -> None:
        """A POST that carries `Last-Event-ID`: continue the stream it names."""
        try:
            await read_body(receive, endpoint.limits.max_body_bytes)  # the original body
            request_id, seq = parse_last_event_id(last_event_id)
            _, payloads = await self.service.open(request_id, seq + 1)
        except TokenwireError as error:
            await send_error(scope, send, endpoint, error)
            return
        # The resumed stream keeps its own id, in the access log as in `x-request-id`.
        scope["state"]["request_id"] = request_id
        request_id_var.set(request_id)
        await self.sse.stream(
            payloads, scope, receive, send, endpoint, self.service.start_of(request_id)
        )

    def resume_route(self, endpoints: Mapping[str, Endpoint]) -> StreamResumeRoute:
        """The `GET /v1/streams/{request_id}` app, framing each stream for the dialect that
        rendered it (`endpoints` by dialect name; the first answers errors)."""
        return StreamResumeRoute(self, endpoints)


class StreamResumeRoute:
    """`GET /v1/streams/{request_id}`: continue a resumable stream after `Last-Event-ID`."""

    def __init__(self, transport: ResumableSSETransport, endpoints: Mapping[str, Endpoint]) -> None:
        self.transport = transport
        self.endpoints = endpoints
        self.fallback = next(iter(endpoints.values()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = scope["path_params"]["request_id"]
        scope["state"]["request_id"] = request_id
        request_id_var.set(request_id)
        header = Headers(scope=scope).get("last-event-id")
        endpoint = self.fallback
        try:
            start = 0
            if header is not None:
                stream_id, seq = parse_last_event_id(header)
                if stream_id != request_id:
                    raise InvalidRequestError(
                        "Last-Event-ID names another stream than the path.",
                        param="last-event-id",
                    )
                start = seq + 1
            info, payloads = await self.transport.service.open(request_id, start)
            endpoint = self.endpoints.get(info.dialect, endpoint)
        except TokenwireError as error:
            await send_error(scope, send, endpoint, error)
            return
        start_of = self.transport.service.start_of(request_id)
        await self.transport.sse.stream(payloads, scope, receive, send, endpoint, start_of)
