"""Request limits, each answered with the status a client can act on."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may ask for.

    Attributes:
        max_body_bytes: larger request bodies get 413.
        max_tokens: the most tokens a request may ask to generate (more gets 400); also the
            budget of requests that name none. None: the backend's context decides.
        max_concurrent_per_key: running requests per API key (more get 429). None: no cap.
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_tokens: int | None = None
    max_concurrent_per_key: int | None = None
