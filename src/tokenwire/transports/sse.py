"""Server-Sent Events (the default for streamed requests), per the WHATWG HTML spec §9.2."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from tokenwire.endpoint import Endpoint
from tokenwire.interfaces import Payload
from tokenwire.stream_start import StreamStart
from tokenwire.transports._calls import open_call
from tokenwire.transports._chunked import stream_chunked
from tokenwire.transports._relay import Source
from tokenwire.transports._replies import request_id_of

_LINE_BREAKS = str.maketrans("", "", "\r\n")


def _one_line(text: str) -> bool:
    # Three substring tests rather than a regex character class: every token's JSON passes
    # here, and the regex is the slower scan (figures in docs/benchmarks.md).
    return "\n" not in text and "\r" not in text and "\x00" not in text


def encode_event(
    data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """Encode one SSE event.

    `event` and `id` lose their CR/LF so they cannot inject fields; `data` is split into one
    `data:` line per line, so it round-trips whatever it holds.
    """
    if (
        retry is None
        and _one_line(data)
        and (id is None or _one_line(id))
        and (event is None or _one_line(event))
    ):
        # The common case, one line of JSON, skips the splitting below.
        head = (f"id: {id}\n" if id is not None else "") + (
            f"event: {event}\n" if event is not None else ""
        )
        return f"{head}data: {data}\n\n".encode()
    lines: list[str] = []
    if id is not None:
        # A NUL makes browsers ignore the id (spec: "if the field value does not contain
        # U+0000 NULL"), so it is dropped as well.
        lines.append(f"id: {id.translate(_LINE_BREAKS).replace(chr(0), '')}")
    if event is not None:
        lines.append(f"event: {event.translate(_LINE_BREAKS)}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    lines.extend(
        f"data: {line}" for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    )
    return ("\n".join(lines) + "\n\n").encode()


def encode_comment(text: str) -> bytes:
    return "".join(f": {line}\n" for line in text.splitlines() or [""]).encode() + b"\n"


class SSETransport:
    """`text/event-stream`: an `id:` on every event (`<request id>:<n>`), keep-alives while
    idle. Dialects whose clients can't parse anything but `data:` lines get only those.
    (`ResumableSSETransport` adds resume on top of this one.)
    """

    name = "sse"

    def accepts(self, scope: Scope) -> bool:
        return bool(scope["type"] == "http")

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint
    ) -> None:
        call = await open_call(scope, receive, send, endpoint, self.name)
        if call is not None:
            await self.stream(call, scope, receive, send, endpoint)

    async def stream(
        self,
        source: Source,
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: Endpoint,
        start: StreamStart | None = None,
    ) -> None:
        """Frame a call's numbered payloads (or a resumed stream's, whose call's `start` lets
        it begin before the first payload) as SSE for `endpoint`'s dialect.

        Dialects without SSE fields (Gemini) get no keep-alives, so their response never
        starts before the first payload either."""
        dialect = endpoint.dialect
        request_id = request_id_of(scope)
        keepalive: bytes | None
        if dialect.sse_fields:

            def frame(payload: Payload, sequence: int) -> bytes:
                return encode_event(
                    payload.data, event=payload.event, id=f"{request_id}:{sequence}"
                )

            if dialect.keepalive is not None:
                keepalive = encode_event(dialect.keepalive.data, event=dialect.keepalive.event)
            else:
                keepalive = encode_comment("keep-alive")
        else:

            def frame(payload: Payload, sequence: int) -> bytes:
                return encode_event(payload.data)

            keepalive = None
        await stream_chunked(
            source,
            scope,
            receive,
            send,
            endpoint,
            media_type="text/event-stream; charset=utf-8",
            frame=frame,
            keepalive=keepalive,
            start=start,
        )
