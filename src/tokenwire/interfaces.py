"""The four plugin contracts — Backend, Middleware, Dialect, Transport — and their shared types.

Plugin authors implement these Protocols; they never subclass tokenwire classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tokenwire.events import Event, Finish
from tokenwire.requests import GenerationRequest

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from tokenwire.endpoint import Endpoint
    from tokenwire.errors import TokenwireError

Generate = Callable[[GenerationRequest], AsyncIterator[Event]]
"""The core contract, like ASGI's app: a request in, an async stream of events out."""


@runtime_checkable
class Backend(Protocol):
    """Runs a model. `generate` yields token deltas and ends with exactly one `Finish`."""

    model_id: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]: ...


class Middleware(Protocol):
    """Wraps the next `Generate`, as ASGI middleware wraps an app.

    Constructed as `cls(app, **options)`; may rewrite the request, observe or rewrite events,
    stop early, or answer without calling `app`. An instance may also have a `routes`
    attribute (Starlette routes) that the app serves beside the API, e.g. `/metrics`.
    """

    def __call__(self, request: GenerationRequest) -> AsyncIterator[Event]: ...


MiddlewareFactory = Callable[[Generate], Generate]
"""A middleware class (or a `functools.partial` of one with its options)."""


@dataclass(frozen=True, slots=True)
class Payload:
    """One dialect message, ready for any transport to frame.

    `data` is the JSON text (or a sentinel such as OpenAI's `[DONE]`); `event` is the SSE
    event name where the dialect has one. `sentinel` marks a non-JSON end marker that
    line-delimited JSON transports leave out.
    """

    data: str
    event: str | None = None
    sentinel: bool = False


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """An error rendered in a dialect's own shape, with its HTTP status and extra headers."""

    status_code: int
    content: Mapping[str, Any]
    headers: Mapping[str, str]


class Exchange(Protocol):
    """One request as a dialect understood it, and the state to render its response."""

    request: GenerationRequest
    stream: bool

    def open(self) -> Sequence[Payload]:
        """Payloads that precede the first token (sent once the first event arrived)."""
        ...

    def render(self, event: Event) -> Sequence[Payload]: ...

    def fail(self, error: TokenwireError) -> Sequence[Payload]:
        """In-band error payloads, for failures after the first byte was sent."""
        ...

    def respond(self, text: str, finish: Finish) -> Mapping[str, Any]:
        """The whole non-streamed response body."""
        ...


class Dialect(Protocol):
    """An API's JSON shapes: parses bodies into requests, renders events and errors.

    `routes` are `(path, methods)` pairs. `sse_fields` is False for APIs whose clients
    choke on SSE `id:`/`event:` lines and comments (google-genai); `keepalive` is the
    payload to send while idle, or None for an SSE comment.
    """

    name: str
    routes: Sequence[str]
    sse_fields: bool
    keepalive: Payload | None

    def parse(
        self, body: Any, path_params: Mapping[str, str], request_id: str, model_id: str
    ) -> Exchange: ...

    def render_error(self, error: TokenwireError) -> ErrorBody: ...


class Transport(Protocol):
    """Frames payloads on one kind of connection and owns it: it notices the client leaving
    and cancels the stream it reads."""

    name: str

    def accepts(self, scope: Scope) -> bool: ...

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint
    ) -> None: ...
