"""Server configuration: a TOML file, overridden by command-line flags."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tokenwire.limits import DEFAULT_MAX_TOKENS, Limits, SlowClientPolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

# The limits' defaults live on `Limits`; the config file names its fields flat.
_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Everything `tokenwire serve` needs. Field names are the config file's keys."""

    backend: str = "onnx"
    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    middlewares: tuple[str, ...] = ()
    middleware_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    backend_options: dict[str, Any] = field(default_factory=dict)
    # `Limits`' fields, one key each (see `limits()`).
    max_body_bytes: int = _LIMITS.max_body_bytes
    # Serving caps what a request may ask for (0: no cap; None would mean "not set" to
    # `override`), where an embedding `create_app` leaves `Limits().max_tokens` uncapped.
    max_tokens: int = DEFAULT_MAX_TOKENS
    max_concurrent_per_key: int | None = _LIMITS.max_concurrent_per_key
    send_buffer_bytes: int = _LIMITS.send_buffer_bytes
    slow_client_policy: SlowClientPolicy = _LIMITS.slow_client_policy
    send_timeout_seconds: float = _LIMITS.send_timeout_seconds
    api_keys: tuple[str, ...] = ()
    metrics_public: bool = True
    cors_origins: tuple[str, ...] = ()
    playground: bool = True
    resume_grace: float | None = None
    # Stored Responses-API responses: kept this long (0: storing off), this many bytes in all.
    response_ttl: float = 3600.0
    response_store_bytes: int = 256 << 20
    # Where resumable streams are kept for every replica (`redis://…`); None: this process.
    stream_store: str | None = None
    # With a stream store: another replica continues a stream whose owner died.
    failover: bool = True
    keepalive_seconds: float = 15.0
    # `inf` (TOML `inf`, flag `off`): never start a response before its first payload.
    early_headers_after: float = 1.0
    log_level: str = "info"
    log_format: str = "text"
    drain_grace: float = 20.0
    shutdown_timeout: float = 5.0

    def __repr__(self) -> str:
        # Keys must never reach a log line through a repr of the config.
        shown = replace(self, api_keys=tuple("***" for _ in self.api_keys))
        if self.stream_store is not None:
            shown = replace(shown, stream_store=redact_url(self.stream_store))
        return (
            "ServeConfig("
            + ", ".join(f"{f.name}={getattr(shown, f.name)!r}" for f in fields(self))
            + ")"
        )

    def __post_init__(self) -> None:
        if not self.early_headers_after >= 0:
            raise ValueError(
                f"early_headers_after must be >= 0 seconds (inf: never), "
                f"got {self.early_headers_after}"
            )
        if not 0 < self.keepalive_seconds < math.inf:
            raise ValueError(f"keepalive_seconds must be > 0, got {self.keepalive_seconds}")

    def early_headers_delay(self) -> float | None:
        """`create_app`'s `early_headers_after`: None (never) for `inf`."""
        return None if math.isinf(self.early_headers_after) else self.early_headers_after

    def limits(self) -> Limits:
        """The request and stream limits these settings give."""
        values = {f.name: getattr(self, f.name) for f in fields(Limits)}
        return Limits(**{**values, "max_tokens": self.max_tokens or None})

    @classmethod
    def from_file(cls, path: Path) -> ServeConfig:
        """Read a TOML config file; unknown keys are an error, not silently ignored."""
        with path.open("rb") as handle:
            data = tomllib.load(handle)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{path}: unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
            )
        for name in ("middlewares", "api_keys", "cors_origins"):
            if name in data:
                data[name] = tuple(data[name])
        return cls(**data)

    def override(self, **changes: Any) -> ServeConfig:
        """A copy with every change that is not None applied."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def redact_url(url: str) -> str:
    """`url` without its password, fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def parse_middleware_option(text: str) -> tuple[str, str, Any]:
    """`name.key=value` → (name, key, value), the value read as `parse_option` reads it."""
    target, sep, _ = text.partition("=")
    name, dot, _ = target.partition(".")
    if not sep or not dot or not name:
        raise ValueError(f"middleware option {text!r} must look like name.key=value")
    key, value = parse_option(text[len(name) + 1 :])
    return name, key, value


def parse_option(text: str) -> tuple[str, Any]:
    """`key=value` → (key, value), the value read as JSON when it parses (numbers, booleans)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"option {text!r} must look like key=value")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.replace("-", "_"), value
