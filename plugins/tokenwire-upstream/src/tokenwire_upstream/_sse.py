"""A small Server-Sent Events decoder, per the WHATWG HTML spec's "event stream" parsing.

Lines come already split (httpx splits on CRLF, LF and CR, as the spec requires). An event
is dispatched at a blank line; an event cut off by the end of the stream is never dispatched,
as the spec says, so a half-received payload is never parsed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event; `event` is "message" unless the stream named it."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Feeds lines, returns an event at each blank line that ends one."""

    __slots__ = ("_data", "_event", "_id", "_started")

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._started = False

    def decode(self, line: str) -> ServerSentEvent | None:
        if not self._started:
            self._started = True
            if line[:1] == "\ufeff":  # the spec strips one leading byte-order mark
                line = line[1:]
        if not line:
            return self._dispatch()
        if line[0] == ":":  # a comment (keep-alive)
            return None
        name, _, value = line.partition(":")
        # Only one leading space is part of the syntax; further spaces are data.
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        # `retry` and unknown fields are ignored: a one-shot request never reconnects.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            # The spec resets the event type even when nothing is dispatched.
            self._event = ""
            return None
        event = ServerSentEvent("\n".join(self._data), self._event or "message", self._id)
        self._data.clear()
        self._event = ""
        return event
