"""Exceptions raised inside the pipeline; only a transport turns one into bytes.

Each carries the HTTP status it maps to and a message fit for the client: it names the bad
field and what is allowed, and never echoes prompt text.
"""

from __future__ import annotations


class TokenwireError(Exception):
    """Base of every error a client may see."""

    status_code: int = 500
    kind: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequestError(TokenwireError):
    """The body is malformed or a field is out of range."""

    status_code = 400
    kind = "invalid_request"


class ContextLengthExceededError(InvalidRequestError):
    """The prompt (plus the requested tokens) does not fit the model's context."""

    kind = "context_length_exceeded"


class AuthenticationError(TokenwireError):
    """No valid API key was presented."""

    status_code = 401
    kind = "authentication"


class NotFoundError(TokenwireError):
    """An unknown model or route target."""

    status_code = 404
    kind = "not_found"


class MethodNotAllowedError(TokenwireError):
    """The path exists but does not answer this HTTP method."""

    status_code = 405
    kind = "method_not_allowed"


class RequestTooLargeError(TokenwireError):
    """The request body is larger than the server accepts."""

    status_code = 413
    kind = "request_too_large"


class RateLimitError(TokenwireError):
    """Too many requests; retry after `retry_after` seconds."""

    status_code = 429
    kind = "rate_limit"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFullError(RateLimitError):
    """The backend's admission queue is full."""


class ServiceUnavailableError(TokenwireError):
    """The server is starting, draining or its backend is unhealthy."""

    status_code = 503
    kind = "unavailable"


class DeadlineExceededError(TokenwireError):
    """The request's deadline passed before generation finished."""

    status_code = 504
    kind = "deadline_exceeded"


class GenerationError(TokenwireError):
    """The backend failed while generating; the message is safe to show."""

    status_code = 500
    kind = "internal_error"


def as_tokenwire_error(exc: BaseException) -> TokenwireError:
    """Wrap an unexpected exception so its details stay in the server log, not on the wire."""
    if isinstance(exc, TokenwireError):
        return exc
    return GenerationError("The server failed while generating a response.")
