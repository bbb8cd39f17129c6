"""What every dialect's renderer shares: compact one-line JSON payloads and response ids."""

from __future__ import annotations

import json
from typing import Any

from tokenwire.interfaces import Payload

# One line, so an SSE `data:` field and an NDJSON record each hold a whole payload. One
# encoder for all: json.dumps with options builds a new JSONEncoder on every call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(document: Any) -> str:
    return _encode(document)


def payload(document: Any, event: str | None = None) -> Payload:
    return Payload(dumps(document), event=event)


def id_tail(request_id: str) -> str:
    """The request id without tokenwire's `req_` prefix, for ids like `chatcmpl-<tail>`."""
    return request_id.removeprefix("req_")
