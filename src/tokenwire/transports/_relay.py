"""A streamed call's payloads on their way to a socket, under the slow-client policy.

Every streaming transport runs the same two tasks per call: one renders payloads into the
stream's `FrameBuffer`, the other writes whatever waits there to a `Sink` in one go. The
sink is what differs: an HTTP response (SSE, NDJSON) or a WebSocket's messages.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Protocol

import anyio
from anyio.abc import TaskGroup
from starlette.types import Message, Receive

from tokenwire.endpoint import Call, Endpoint
from tokenwire.errors import TokenwireError
from tokenwire.events import Event
from tokenwire.interfaces import Payload
from tokenwire.pipeline import closing
from tokenwire.send_buffers import SendBuffers
from tokenwire.stream_start import StreamStart
from tokenwire.transports._backpressure import EventFeed, FrameBuffer

Frame = Callable[[Payload, int], bytes]
"""Encode one payload, given its 0-based sequence number; b"" leaves it out."""

Source = Call | AsyncIterator[tuple[int, Payload]]
"""What a transport relays: a call, or numbered payloads read back (a resumed stream)."""

logger = logging.getLogger("tokenwire")


class Sink(Protocol):
    """Where a relayed stream goes."""

    async def begin(self) -> None:
        """The response starts: its first payload is ready, or the call was admitted and
        waits (an HTTP response sends its headers now)."""

    async def write(self, body: bytes) -> None:
        """Send framed bytes: one frame or several, whole."""

    async def end(self) -> None:
        """The stream is complete."""

    async def refuse(self, error: TokenwireError) -> None:
        """The call failed before its first payload: answer with the error instead."""


class NumberedPayloads:
    """A call's payloads with their 0-based sequence numbers (the SSE ids), rendered from
    `events` (the call's own stream when None).

    Counts in `__anext__` rather than through another async generator: every token passes
    here.
    """

    __slots__ = ("_events", "_payloads", "_sequence", "call")

    def __init__(self, call: Call, events: AsyncIterator[Event] | None = None) -> None:
        self.call = call
        self._events = events
        self._payloads: AsyncGenerator[Payload, None] | None = None
        self._sequence = 0

    def __aiter__(self) -> NumberedPayloads:
        return self

    async def __anext__(self) -> tuple[int, Payload]:
        if self._payloads is None:
            self._payloads = self.call.payloads(self._events)
        payload = await self._payloads.__anext__()
        sequence = self._sequence
        self._sequence = sequence + 1
        return sequence, payload

    async def aclose(self) -> None:
        if self._payloads is not None:
            await self._payloads.aclose()


async def cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """Cancel `scope` when the HTTP client leaves (its request body is read by now)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def first_frames(
    frames: FrameBuffer, start: StreamStart | None, delay: float | None
) -> tuple[list[bytes | None], bool]:
    """Wait for the stream's first frames: ([them, or None at the end], False) — or, once the
    call is admitted and `delay` seconds have passed without them, (what came meanwhile,
    maybe nothing, True): the response begins early (the call is committed to it)."""
    if start is None or delay is None:
        return [await frames.take()], False
    with anyio.move_on_after(delay):
        return [await frames.take()], False
    taken: list[bytes | None] = []
    early = False

    async def take() -> None:
        taken.append(await frames.take())
        race.cancel_scope.cancel()

    async def admitted() -> None:
        nonlocal early
        await start.wait_admitted()
        # A call that failed meanwhile is refused instead; its end reaches `take`.
        if start.commit():
            early = True
            race.cancel_scope.cancel()

    async with anyio.create_task_group() as race:
        race.start_soon(take)
        race.start_soon(admitted)
    return taken, early


async def relay(
    source: Source,
    endpoint: Endpoint,
    sink: Sink,
    *,
    frame: Frame,
    keepalive: bytes | None = None,
    disconnects: Receive | None = None,
    on_first_byte: Callable[[], None] | None = None,
    start: StreamStart | None = None,
) -> bool:
    """Stream a call's numbered payloads (or those of a resumed stream) to `sink`; False when
    the slow-client policy ended it.

    The sink begins once the first payload is ready, so a failure before the first token is
    refused as a real error — or earlier, when the call (`start`, the call's own for a
    `Call`) was admitted and waited `endpoint.early_headers_after` seconds: then the sink
    begins with a `keepalive` (needed: a transport without one never begins early) and
    keeps sending it while the call waits; a failure from then on is in band.
    `disconnects` is the ASGI receive to watch for an HTTP
    client leaving (a WebSocket transport watches its own). A client that reads too slowly
    is met with the endpoint's slow-client policy (see `_backpressure`): its deltas
    coalesce, or a write that waits past the send timeout ends the stream as a disconnect
    would.
    """
    limits = endpoint.limits
    frames = FrameBuffer(limits.send_buffer_bytes, endpoint.send_buffers or SendBuffers())
    feed: EventFeed | None = None
    payloads: AsyncIterator[tuple[int, Payload]]
    if not isinstance(source, Call):
        payloads = source  # already rendered: nothing left to merge
    elif limits.slow_client_policy == "coalesce":
        # Merging happens on events, under the dialect: the call renders the feed's events,
        # and the feed reads the pipeline (it is closed below, after the tasks that pull it).
        feed = EventFeed(frames, source.generate(source.request))
        payloads = NumberedPayloads(source, feed.events())
    else:
        payloads = NumberedPayloads(source)
    if isinstance(source, Call):
        start = source.start
    early_after = endpoint.early_headers_after if keepalive else None
    timeout = limits.send_timeout_seconds if limits.slow_client_policy == "disconnect" else None
    last_write = anyio.current_time()
    cut_off = False  # the slow-client policy ended the stream

    async def write(body: bytes, tg: TaskGroup) -> bool:
        """Send one chunk; False when the client took too long and the stream was ended."""
        nonlocal last_write, cut_off
        frames.sending_started()
        try:
            if timeout is None:
                await sink.write(body)
            else:
                with anyio.move_on_after(timeout) as waited:
                    await sink.write(body)
                if waited.cancelled_caught:
                    logger.warning(
                        "client read nothing for %.1f s; ending the stream (slow client policy "
                        "'disconnect')",
                        timeout,
                    )
                    cut_off = True
                    tg.cancel_scope.cancel()
                    return False
        finally:
            frames.sending = False
        last_write = anyio.current_time()
        return True

    try:
        async with closing(payloads), anyio.create_task_group() as tg:
            if disconnects is not None:
                tg.start_soon(cancel_on_disconnect, disconnects, tg.cancel_scope)
            if feed is not None:
                feed.task_group = tg
            refused: TokenwireError | None = None

            async def pump() -> None:
                # A separate task renders the payloads, so the writer below can send
                # whatever is waiting in one write while the client is slow.
                nonlocal refused
                try:
                    async for item in payloads:
                        chunk = frame(item[1], item[0])
                        if chunk and not frames.offer(chunk):
                            await frames.put(chunk)
                except TokenwireError as error:
                    # Raised only before the first payload (later failures are in band),
                    # and never once the call was committed to an early start.
                    refused = error
                finally:
                    frames.close()

            async def keep_alive(chunk: bytes, interval: float) -> None:
                while True:
                    await anyio.sleep(max(0.0, last_write + interval - anyio.current_time()))
                    # A write in flight means the client is slow, not that the stream is idle.
                    if not frames.sending and anyio.current_time() - last_write >= interval:
                        await write(chunk, tg)

            tg.start_soon(pump)
            taken, early = await first_frames(frames, start, early_after)
            body = taken[0] if taken else None
            if early:
                assert keepalive is not None
                await sink.begin()
                # Bytes, not only headers: some proxies pass headers on with the first body.
                if not await write(keepalive, tg):
                    return False
                tg.start_soon(keep_alive, keepalive, endpoint.keepalive_seconds)
                if not taken:
                    body = await frames.take()
            elif body is None and refused is not None:
                await sink.refuse(refused)
                tg.cancel_scope.cancel()
                return True
            else:
                await sink.begin()
            first_payload = True
            while body is not None:
                sent = await write(body, tg)
                frames.sent(len(body))
                if not sent:
                    return False
                if first_payload:
                    first_payload = False
                    if on_first_byte is not None:
                        on_first_byte()
                    if keepalive and not early:
                        tg.start_soon(keep_alive, keepalive, endpoint.keepalive_seconds)
                body = await frames.take()
            if refused is not None:
                # Cannot happen with a call (see `StreamStart`); a reader of a stream that
                # failed before its first payload just ends.
                logger.error("stream failed after its response began: %s", refused)
            await sink.end()
            tg.cancel_scope.cancel()
    finally:
        frames.discard()
        if feed is not None:
            feed.discard()
            async with closing(feed.source):
                pass
    return not cut_off  # also True when the HTTP client left: that is no slow client
