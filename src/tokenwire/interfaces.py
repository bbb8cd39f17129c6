"""The plugin contracts below the endpoint — Backend, Middleware, Dialect — and their shared types.

Plugin authors implement these Protocols; they never subclass tokenwire classes. The fourth
contract, `Transport`, is handed an `Endpoint`, so it lives beside it in `tokenwire.endpoint`.
A middleware may also declare what it offers the app beside its stream — routes, a
first-byte observer, a metrics registry — through the capability Protocols at the end; the
app looks for exactly these and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tokenwire.completion import Completion
from tokenwire.events import Event
from tokenwire.requests import GenerationRequest

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from starlette.routing import BaseRoute

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
    stop early, or answer without calling `app`. It may also implement the capability
    Protocols below (`ServesRoutes`, `ObservesFirstByte`, `ExportsMetrics`).
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

    def respond(self, completion: Completion) -> Mapping[str, Any]:
        """The whole non-streamed response body."""
        ...


class Dialect(Protocol):
    """An API's JSON shapes: parses bodies into requests, renders events and errors.

    `routes` are the paths it answers (POST, and WebSocket upgrades). `sse_fields` is False for APIs whose clients
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


@runtime_checkable
class ServesRoutes(Protocol):
    """A middleware that serves HTTP routes of its own beside the API (`/metrics`,
    `DELETE /v1/requests/{id}`)."""

    routes: Sequence[BaseRoute]


@runtime_checkable
class ObservesFirstByte(Protocol):
    """A middleware that times the first response byte, which only the transport sees."""

    def observe_first_byte(self, request: GenerationRequest, seconds: float) -> None: ...


@runtime_checkable
class ExportsMetrics(Protocol):
    """A middleware whose Prometheus registry the app also exports its own gauges to."""

    @property
    def metrics_registry(self) -> CollectorRegistry: ...


@runtime_checkable
class RunsDetached(Protocol):
    """An exchange that may run apart from its connection (the Responses API's `background`):
    the app runs it in a task of its own, and clients read, resume or cancel it by id."""

    @property
    def background(self) -> bool: ...

    def detach(self) -> Mapping[str, Any]:
        """It is about to run detached: keep it as it stands and return that reply body."""
        ...

    def snapshot(self) -> Mapping[str, Any]:
        """The reply body as it stands (the output so far)."""
        ...
