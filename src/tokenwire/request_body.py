"""A request body before any dialect reads it: JSON, an object, within the size limit, and
text UTF-8 can carry; and the request timeout a body field or header may set."""

from __future__ import annotations

import json
import math
import re
from contextlib import suppress
from typing import Any

from tokenwire.errors import InvalidRequestError, RequestTooLargeError


def decode_body(body: bytes | str, limit: int) -> dict[str, Any]:
    """`body` as the JSON object it must be.

    Raises:
        TokenwireError: the body is over `limit` bytes, not JSON, or not an object.
    """
    if len(body) > limit:
        raise RequestTooLargeError(
            f"Request body is {len(body)} bytes; the limit is {limit} bytes."
        )
    try:
        document = json.loads(body)
    except RecursionError:
        raise InvalidRequestError("Request body is nested too deeply.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequestError("Request body must be a JSON object.")
    if has_lone_surrogate(body, document):
        raise InvalidRequestError(
            "Request body is not valid JSON text: it holds an unpaired UTF-16 surrogate "
            "(a \\ud800-\\udfff escape), which no UTF-8 text can carry."
        )
    return document


def parse_timeout(value: object, field: str) -> float:
    """A request timeout in seconds: a positive, finite number."""
    if isinstance(value, str):
        with suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InvalidRequestError(
            f"Invalid value for '{field}': a positive number of seconds.", param=field
        )
    return float(value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(body: bytes | str, document: object) -> bool:
    """Whether a decoded body holds a lone surrogate, which json.loads lets through (from a
    `\\udXXX` escape, or raw bytes it decodes with "surrogatepass") and UTF-8 cannot encode."""
    if isinstance(body, bytes):
        if b"\\u" not in body and b"\xed" not in body:
            return False
    elif "\\u" not in body:
        return False
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
