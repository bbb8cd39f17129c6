"""Slow clients: a stream's bounded send buffer, and deltas that merge while it is full.

A client that reads slower than tokens arrive must never hold up anything but its own
stream, and must not make the server hold an unbounded backlog for it. Each stream (SSE,
NDJSON or WebSocket; see `_relay`) has a `FrameBuffer` of framed bytes, bounded by
`Limits.send_buffer_bytes`, between the task that renders payloads and the task that
writes to the socket.

With the "coalesce" policy an `EventFeed` also sits between the pipeline and the
dialect. Once the frame buffer is full (the client is behind), a task of the stream takes
over pulling the pipeline's events, so the backend below goes on at its own pace, and the
feed merges token deltas into one pending delta instead of queueing them: the client
later receives fewer, larger deltas. Text merges only with text of the same channel, and a
tool call's argument fragments only with the same call's. Merging happens on events, before
the dialect renders them: JSON payloads can't be merged, and one rendered chunk per token
costs ~40 times the text's own bytes. Only once the pending text reaches the bound too does the feed stop pulling;
past that the backend holds the text (the ONNX backend merges it the same way, so its
decode loop never waits for a reader).

While the client keeps up nothing merges: every delta reaches it as the backend made it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable

import anyio
from anyio.abc import TaskGroup

from tokenwire.events import Event, Finish, Progress, TokenDelta, ToolCallDelta
from tokenwire.send_buffers import SendBuffers

# Events that may wait for the renderer while the client keeps up: it only runs behind the
# backend for a moment, and this keeps one-delta-per-token until the socket is what lags.
_FEED_EVENTS = 32


class FrameBuffer:
    """One stream's framed bytes on their way to the socket, bounded by `limit` bytes.

    `put` waits while the buffer is full; a frame that arrives below the bound is taken
    whole, so the buffer holds at most `limit` bytes plus one frame. Bytes stay counted
    until the write that took them returns (`sent`).

    The client is `behind` when the buffer is full while a write is stuck in `send`: a
    renderer that merely outran the writer for a moment fills the buffer too, but then the
    writer's next `send` returns at once (the socket takes it).
    """

    __slots__ = (
        "_chunks",
        "_closed",
        "_drained",
        "_taker",
        "accounts",
        "limit",
        "on_behind",
        "sending",
        "size",
    )

    def __init__(self, limit: int, accounts: SendBuffers) -> None:
        self.limit = limit
        self.accounts = accounts
        self.size = 0
        self.sending = False
        self.on_behind: Callable[[], None] | None = None
        self._chunks: list[bytes] = []
        self._closed = False
        self._taker: anyio.Event | None = None  # set while `take` waits for a frame
        self._drained = anyio.Event()

    @property
    def behind(self) -> bool:
        return self.sending and self.size >= self.limit

    def offer(self, chunk: bytes) -> bool:
        """Take `chunk` unless the buffer is full; then `put` is what waits for room.

        Every token passes here, so the common case costs no coroutine.
        """
        if self.size >= self.limit:
            return False
        self._chunks.append(chunk)
        self.size += len(chunk)
        self.accounts.add(len(chunk))
        self._wake_taker()
        return True

    async def put(self, chunk: bytes) -> None:
        while not self.offer(chunk):
            # The writer runs only when this task waits, so `sending` here means its send
            # is suspended: the socket pushes back.
            if self.sending and self.on_behind is not None:
                self.on_behind()
            if self._drained.is_set():
                self._drained = anyio.Event()
            await self._drained.wait()

    def close(self) -> None:
        """No more frames: `take` returns None once the buffer is empty."""
        self._closed = True
        self._wake_taker()

    async def take(self) -> bytes | None:
        """Everything waiting, as one write (None at the end); waits for a frame."""
        while not self._chunks:
            if self._closed:
                return None
            self._taker = taker = anyio.Event()
            await taker.wait()
        chunks, self._chunks = self._chunks, []
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def sending_started(self) -> None:
        self.sending = True
        if self.size >= self.limit:
            self._drained.set()  # a `put` waiting on a full buffer looks again (see `put`)

    def sent(self, size: int) -> None:
        """The write of `size` bytes returned: they are the socket's now, not ours."""
        self.size -= size
        self.accounts.add(-size)
        self._drained.set()

    def _wake_taker(self) -> None:
        if self._taker is not None:
            self._taker.set()
            self._taker = None

    def discard(self) -> None:
        """Forget what is still held (the stream ended early), for the accounts."""
        held = self.size
        self._chunks = []
        self.size = 0
        self.accounts.add(-held)


class EventFeed:
    """A request's events on their way to the dialect, merged while the client is behind.

    While the client keeps up, `events` reads `source` directly: no task, no copy. When
    the client falls behind (see `FrameBuffer.behind`), `run` (a task of the stream's group) takes over pulling `source`
    into a queue where consecutive token deltas merge; once their text reaches the frame
    buffer's bound too, it stops pulling until the client catches up. `source` is closed
    by its owner, the stream, after the task group ends.
    """

    __slots__ = (
        "_busy",
        "_changed",
        "_done",
        "_error",
        "_fed",
        "_items",
        "_pending",
        "_ready",
        "_sizes",
        "_text_bytes",
        "frames",
        "source",
        "task_group",
    )

    def __init__(self, frames: FrameBuffer, source: AsyncIterator[Event]) -> None:
        self.frames = frames
        self.source = source
        self.task_group: TaskGroup | None = None
        frames.on_behind = self._fall_behind
        self._fed = False  # `run` pulls the source (for the rest of the stream)
        self._busy = False  # `events` is awaiting the source
        self._pending = False  # fell behind while `events` was awaiting the source
        self._items: deque[Event] = deque()
        self._sizes: deque[int] = deque()  # text bytes of each item (0 for non-deltas)
        self._text_bytes = 0
        self._done = False
        self._error: Exception | None = None
        self._ready = anyio.Event()  # something for `events` to take
        self._changed = anyio.Event()  # room, or the client fell behind: `run` may go on

    async def events(self) -> AsyncIterator[Event]:
        """The source's events, merged where the client was behind (the call renders these)."""
        source = self.source
        while not self._fed:
            self._busy = True
            try:
                event = await source.__anext__()
            except StopAsyncIteration:
                return
            finally:
                self._busy = False
            if self._pending:
                self._start_feeding()
            yield event
        items = self._items
        while True:
            while not items:
                if self._done:
                    if self._error is not None:
                        raise self._error
                    return
                if self._ready.is_set():
                    self._ready = anyio.Event()
                await self._ready.wait()
            event = items.popleft()
            self._count(-self._sizes.popleft())
            self._changed.set()
            yield event

    async def run(self) -> None:
        """Pull the rest of the source into the queue (started when the client falls behind)."""
        try:
            async for event in self.source:
                # Progress notes are for middlewares; the dialect never sees them.
                if isinstance(event, Progress):
                    continue
                await self._put(event)
                if isinstance(event, Finish):
                    break
        except Exception as exc:
            self._error = exc  # raised by `events`, where the endpoint handles it
        finally:
            self._done = True
            self._ready.set()

    def discard(self) -> None:
        """Forget what is still held (the stream ended early), for the accounts."""
        self._count(-self._text_bytes)
        self._items.clear()
        self._sizes.clear()

    def _fall_behind(self) -> None:
        # Called from the renderer's `put`: `events` is then parked at its yield, so the
        # source is free to be handed to `run` (the guard covers any other caller).
        if not self._fed:
            if self._busy:
                self._pending = True
            else:
                self._start_feeding()
        self._changed.set()

    def _start_feeding(self) -> None:
        assert self.task_group is not None, "EventFeed.task_group must be set"
        self._fed, self._pending = True, False
        self.task_group.start_soon(self.run)

    async def _put(self, event: Event) -> None:
        items = self._items
        while True:
            if not self.frames.behind:
                if len(items) < _FEED_EVENTS:
                    break
            elif items and _mergeable(items[-1], event):
                if self._text_bytes < self.frames.limit:
                    self._merge(event)
                    return
            elif len(items) < _FEED_EVENTS:
                break  # behind, with nothing to merge into: it starts the pending delta
            if self._changed.is_set():
                self._changed = anyio.Event()
            await self._changed.wait()
        size = _text_bytes(event)
        items.append(event)
        self._sizes.append(size)
        self._count(size)
        self._ready.set()

    def _merge(self, event: Event) -> None:
        last = self._items.pop()
        merged: Event
        if isinstance(last, TokenDelta) and isinstance(event, TokenDelta):
            logprobs = None
            if last.logprobs is not None and event.logprobs is not None:
                logprobs = last.logprobs + event.logprobs
            text, ids = last.text + event.text, last.token_ids + event.token_ids
            merged = TokenDelta(text, ids, logprobs, last.channel)
        else:
            assert isinstance(last, ToolCallDelta) and isinstance(event, ToolCallDelta)
            arguments, ids = last.arguments + event.arguments, last.token_ids + event.token_ids
            merged = ToolCallDelta(last.index, last.id, last.name, arguments, ids)
        self._items.append(merged)
        size = _text_bytes(event)
        self._sizes[-1] += size
        self._count(size)

    def _count(self, size: int) -> None:
        if size:
            self._text_bytes += size
            self.frames.accounts.add(size)


def _mergeable(last: Event, event: Event) -> bool:
    """Whether `event` can join `last`: text of the same channel (reasoning never joins the
    answer), or the next arguments fragment of the same tool call (never its start)."""
    if isinstance(event, TokenDelta):
        return isinstance(last, TokenDelta) and last.channel == event.channel
    if isinstance(event, ToolCallDelta):
        return (
            isinstance(last, ToolCallDelta)
            and last.index == event.index
            and event.id is None
            and event.name is None
        )
    return False


def _text_bytes(event: Event) -> int:
    """The bytes a pending event holds for its client: text or arguments."""
    if isinstance(event, TokenDelta):
        return len(event.text.encode())
    if isinstance(event, ToolCallDelta):
        return len(event.arguments.encode())
    return 0
