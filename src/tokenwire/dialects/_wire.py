"""What every dialect's renderer shares: compact one-line JSON payloads and response ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tokenwire.interfaces import Payload

# One line, so an SSE `data:` field and an NDJSON record each hold a whole payload. One
# encoder for all: json.dumps with options builds a new JSONEncoder on every call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(document: Any) -> str:
    return _encode(document)


_SENTINEL = "\x00tokenwire-text\x00"
_SENTINEL_JSON = _encode(_SENTINEL)
_encode_text = json.encoder.encode_basestring  # exactly how _encode writes a str (C speed)


class TextTemplate:
    """A payload whose only varying part is one text field, rendered by splicing.

    Token deltas differ from each other in their text alone; encoding the whole document
    per token was the largest cost on the streaming path. `render` gives the payload the
    document would give, with `text` in the place of the sentinel.
    """

    __slots__ = ("_after", "_before", "_event")

    def __init__(self, build: Callable[[str], Payload]) -> None:
        probe = build(_SENTINEL)
        before, sep, after = probe.data.partition(_SENTINEL_JSON)
        if not sep or _SENTINEL_JSON in after:
            raise ValueError("the template must hold the text exactly once")
        self._before, self._after, self._event = before, after, probe.event

    def render(self, text: str) -> Payload:
        return Payload(self._before + _encode_text(text) + self._after, event=self._event)


def payload(document: Any, event: str | None = None) -> Payload:
    return Payload(dumps(document), event=event)


def id_tail(request_id: str) -> str:
    """The request id without tokenwire's `req_` prefix, for ids like `chatcmpl-<tail>`."""
    return request_id.removeprefix("req_")
