"""Request limits, each answered with the status a client can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_SEND_BUFFER_BYTES = 64 * 1024
# `tokenwire serve`'s cap on max_tokens (`Limits` itself has none): half the default model's
# 8,192-token context, so a request that names no max_tokens still leaves half the context
# for its prompt; the output cap of many hosted models; and on the 2-core CPU (100-180 tok/s
# alone) about half a minute of one stream, so a forgotten max_tokens cannot hold a slot
# and a non-streamed connection for minutes.
DEFAULT_MAX_TOKENS = 4096

SlowClientPolicy = Literal["coalesce", "disconnect"]
SLOW_CLIENT_POLICIES: tuple[SlowClientPolicy, ...] = ("coalesce", "disconnect")


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may ask for, and what one stream may hold.

    Attributes:
        max_body_bytes: larger request bodies get 413.
        max_tokens: the most tokens a request may ask to generate (more gets 400); also the
            budget of requests that name none, which the backend cuts to the room the prompt
            leaves. None: the backend's context decides. Either way a backend refuses a
            max_tokens beyond what its context leaves after the prompt (400).
        max_concurrent_per_key: running requests per API key (more get 429). None: no cap.
        send_buffer_bytes: framed bytes a stream (SSE, NDJSON, WebSocket) may hold for a
            client that reads slower than tokens arrive (a frame that arrives while it is
            below the bound is taken whole).
        slow_client_policy: what happens once that buffer is full. "coalesce": the stream's
            token deltas merge into fewer, larger ones until the client catches up.
            "disconnect": a write that waits longer than `send_timeout_seconds` ends the
            stream as if the client had left.
        send_timeout_seconds: how long one write may wait for a slow client ("disconnect").
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_tokens: int | None = None
    max_concurrent_per_key: int | None = None
    send_buffer_bytes: int = DEFAULT_SEND_BUFFER_BYTES
    slow_client_policy: SlowClientPolicy = "coalesce"
    send_timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None (no cap), got {self.max_tokens}")
        if self.send_buffer_bytes < 1:
            raise ValueError(f"send_buffer_bytes must be >= 1, got {self.send_buffer_bytes}")
        if self.slow_client_policy not in SLOW_CLIENT_POLICIES:
            raise ValueError(
                f"slow_client_policy must be one of {', '.join(SLOW_CLIENT_POLICIES)}, "
                f"got {self.slow_client_policy!r}"
            )
        if not self.send_timeout_seconds > 0:
            raise ValueError(f"send_timeout_seconds must be > 0, got {self.send_timeout_seconds}")
