"""Upstream failures as tokenwire errors: HTTP statuses before the stream, transport faults.

The client reads these messages, so they never carry the upstream's URL, its model name
or its tracebacks; only a 400's message (a validation error about the client's own
request) is passed through.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any

import httpx

from tokenwire import (
    ContextLengthExceededError,
    GenerationError,
    InvalidRequestError,
    NotFoundError,
    QueueFullError,
    RequestTooLargeError,
    ServiceUnavailableError,
    TokenwireError,
)

MAX_ERROR_BODY_BYTES = 64 * 1024
_MAX_MESSAGE_CHARS = 500


def error_from_status(
    status: int, body: bytes, headers: Mapping[str, str], model: str
) -> TokenwireError:
    """The error an upstream answer with status `status` (>= 400) stands for.

    `model` is the id the client asked for, named in a 404 instead of the upstream's own.
    """
    message, param, code = _error_fields(body)
    if status == 400 or status == 422:
        text = message or "The upstream server rejected the request."
        if code == "context_length_exceeded" or "context length" in text.lower():
            return ContextLengthExceededError(text, param=param)
        return InvalidRequestError(text, param=param)
    if status == 404:
        return NotFoundError(
            f"The model '{model}' is not available from the upstream server.", param="model"
        )
    if status == 413:
        return RequestTooLargeError("The request is too large for the upstream server.")
    if status == 429:
        return QueueFullError(
            "The upstream server is busy; retry later.",
            retry_after=retry_after(headers.get("retry-after")),
        )
    if status in (502, 503, 504):
        return ServiceUnavailableError("The upstream server is unavailable; try again later.")
    if status >= 500:
        return GenerationError(f"The upstream server failed (HTTP {status}).")
    # 401/403 mean our configured key is wrong: the operator's fault, not the client's.
    return GenerationError(f"The upstream server refused the request (HTTP {status}).")


def error_from_transport(exc: httpx.RequestError, *, streaming: bool) -> TokenwireError:
    """The error a failed connection stands for, before the stream began or during it."""
    if streaming:
        return GenerationError("The connection to the upstream server was lost mid-stream.")
    if isinstance(exc, httpx.PoolTimeout):
        return QueueFullError("All upstream connections are busy; retry later.")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ServiceUnavailableError("The upstream server is unreachable; try again later.")
    if isinstance(exc, httpx.TimeoutException):
        return GenerationError("The upstream server did not answer in time.")
    return GenerationError("The connection to the upstream server failed.")


def retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        seconds = when.timestamp() - time.time()
    return seconds if math.isfinite(seconds) and seconds > 0 else default


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """message, param and code from OpenAI's `{"error": {...}}` and the common variants."""
    try:
        document: Any = json.loads(body)
    except ValueError:
        return None, None, None
    if not isinstance(document, dict):
        return None, None, None
    error = document.get("error", document)
    if isinstance(error, str):  # {"error": "text"} (llama.cpp's older servers)
        return _clip(error), None, None
    if not isinstance(error, dict):
        return None, None, None
    message = error.get("message", error.get("detail"))
    param, code = error.get("param"), error.get("code")
    return (
        _clip(message) if isinstance(message, str) else None,
        param if isinstance(param, str) else None,
        code if isinstance(code, str) else None,
    )


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS] + "…"
