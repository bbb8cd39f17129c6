"""The plugin contracts below the endpoint — Backend, Middleware, Dialect — and their shared types.

Plugin authors implement these Protocols; they never subclass tokenwire classes. The fourth
contract, `Transport`, is handed an `Endpoint`, so it lives beside it in `tokenwire.endpoint`.
A middleware may also declare what it offers the app beside its stream — routes, a
first-byte observer, a metrics registry, a cache's size, a load observer — and a backend, dialect
or exchange what it can do beside streaming (report its load, count a prompt's tokens, read
the backend's progress notes), through the capability Protocols at the end; the app looks for
exactly these and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tokenwire.completion import Completion
from tokenwire.events import Event, Progress
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
class CancelsById(Protocol):
    """A middleware that cancels running requests by id (`DELETE /v1/requests/{id}`), and
    can be handed a way to reach requests that run on other replicas."""

    def cancel_here(self, request_id: str) -> int:
        """Cancel the requests with this id running in this process; how many there were."""
        ...

    def reach_replicas(self, cancel_elsewhere: Callable[[str], Awaitable[bool]]) -> None:
        """`cancel_elsewhere(id)`: whether another replica ran it and stopped; it raises a
        `TokenwireError` (a 503) when the other replicas cannot be asked."""
        ...


@runtime_checkable
class ObservesFirstByte(Protocol):
    """A middleware that times the first response byte, which only the transport sees."""

    def observe_first_byte(self, request: GenerationRequest, seconds: float) -> None: ...


@runtime_checkable
class ExportsMetrics(Protocol):
    """A middleware whose Prometheus registry the app also exports its own gauges to."""

    @property
    def metrics_registry(self) -> CollectorRegistry: ...


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """A backend's load now: requests `waiting` for a slot, `running` (prefilling or decoding),
    `batch_size` sequences in the decode batch, the share of its KV capacity in use (0–1),
    and the KV bytes one token takes (0 when unknown)."""

    waiting: int
    running: int
    batch_size: int
    kv_used_fraction: float
    kv_token_bytes: int = 0


@runtime_checkable
class ReportsLoad(Protocol):
    """A backend that reports its load, read at scrape time by the metrics middleware (the
    Gateway API Inference Extension's endpoint picker routes on it)."""

    def load(self) -> LoadSnapshot: ...


@runtime_checkable
class HoldsCache(Protocol):
    """A middleware that holds a cache of KV bounded in bytes, in blocks of `cache_block_tokens`."""

    @property
    def cache_bytes(self) -> int: ...

    @property
    def cache_budget(self) -> int: ...

    @property
    def cache_block_tokens(self) -> int: ...


@runtime_checkable
class ObservesLoad(Protocol):
    """A middleware that exports the backend's load and the caches' sizes (read when scraped).

    `backend` is None when the backend does not report its load.
    """

    def observe_load(
        self, model: str, backend: ReportsLoad | None, caches: Sequence[HoldsCache]
    ) -> None: ...


@runtime_checkable
class CountsTokens(Protocol):
    """A backend that counts the tokens it would prefill for a request: the prompt exactly
    as its `generate` renders it (chat template, tools described), without running it."""

    async def count_tokens(self, request: GenerationRequest) -> int: ...


@runtime_checkable
class ServesTokenCounts(Protocol):
    """A dialect whose API also counts a prompt's tokens (Anthropic's
    `/v1/messages/count_tokens`, Gemini's `:countTokens`).

    `count_routes` are those paths (POST); `parse_count` reads a body into the request whose
    prompt is counted, validated as `parse` validates a generation's; `render_count` is the
    answer's body.
    """

    count_routes: Sequence[str]

    def parse_count(
        self, body: Any, path_params: Mapping[str, str], request_id: str, model_id: str
    ) -> GenerationRequest: ...

    def render_count(self, tokens: int) -> Mapping[str, Any]: ...


@runtime_checkable
class ObservesProgress(Protocol):
    """An exchange that reads the backend's `Progress` notes before the first token, e.g. to
    put the prompt's size in the payloads `open` returns."""

    def observe_progress(self, event: Progress) -> None: ...


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


@runtime_checkable
class ContinuesGeneration(Protocol):
    """A backend that continues a generation another process began (failover): given a
    request with a `continuation`, it replays those tokens as the events they made the first
    time (their text, one event per group, advancing its text, stop, constraint, length and
    seeded-sampler state as sampling them did), then generates on from there. The `Finish`
    counts the replayed tokens as completion tokens."""

    def can_continue(self, request: GenerationRequest) -> bool:
        """Whether `generate` can continue this request (False: its stream is not adopted)."""
        ...


@runtime_checkable
class KeepsIdentity(Protocol):
    """An exchange whose payloads carry values of its own beside the request's (the time it
    was created). Another exchange parsed from the same body and given them renders the same
    bytes: how a replica continues a stream whose owner died."""

    def identity(self) -> Mapping[str, str]: ...

    def restore_identity(self, identity: Mapping[str, str]) -> None: ...


@runtime_checkable
class SettlesWrites(Protocol):
    """An exchange whose last render wrote state other replicas read (a stored response in a
    shared store): the payloads that announce it go out only once `settle` returned, so a
    client that reads them and asks another replica finds it there."""

    async def settle(self) -> None: ...


@runtime_checkable
class PrefetchesReferences(Protocol):
    """A dialect whose requests may name state kept elsewhere (`previous_response_id`):
    `prefetch` brings it in before the synchronous `parse` reads it; it raises a
    `TokenwireError` (a 503) when the state may exist but cannot be brought in now."""

    async def prefetch(self, body: Mapping[str, Any]) -> None: ...
