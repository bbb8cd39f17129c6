"""`GroupWriter`: the writes of every stream a process produces, in one round trip at a time.

Each producing stream flushes its payloads every few milliseconds. Sent on their own, 32
streams make 32 pipelines per flush interval, and on a small machine the cost is less the
commands than the sends and the wake-ups of redis-server they cause (profiled: the socket
write was three times the rest of the store's work). Here the commands of every caller that
arrives while a write is in flight are gathered and go out together in the next one: a
group commit, at most one write in flight per process, so the number of round trips follows
the flush interval, not the number of streams.

Per stream nothing changes: a caller's commands stay together and in order, a stream's next
flush starts only after its last one returned, and a caller learns whether its own commands
failed (a refused `XADD` fails its stream alone; a lost connection fails every caller of that
write). Memory stays bounded: a caller waits for its write, so a stream has at most one batch
queued here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

Command = tuple[str | bytes | int | float, ...]
"""A Redis command and its arguments, as `execute_command` takes them."""

WRITE_TIMEOUT_SECONDS = 10.0
"""A write that takes longer fails its callers (the client's own timeouts come first)."""


class _Group:
    """Commands gathered for one write, and where each caller's answers lie."""

    __slots__ = ("commands", "done", "error", "results")

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.results: list[Any] = []
        self.error: BaseException | None = None
        self.done = anyio.Event()

    def add(self, commands: Sequence[Command]) -> slice:
        start = len(self.commands)
        self.commands.extend(commands)
        return slice(start, len(self.commands))


class GroupWriter:
    """Sends the commands of concurrent callers to Redis in one pipeline per round trip."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._open: _Group | None = None  # gathering while the previous write is in flight
        self._sending = anyio.Lock()
        self.writes = 0  # round trips made (for tests and benchmarks)

    async def write(self, commands: Sequence[Command]) -> list[Any]:
        """Send `commands` (in order, with other callers' commands around them) and return
        their answers, a refused command's `ResponseError` in its place.

        Raises:
            RedisError: the write failed as a whole (connection lost, timeout).
            OSError: the same, from the socket.
        """
        group = self._open
        if group is None:
            group = self._open = _Group()
            mine = group.add(commands)
            # The first caller sends the group. It is shielded: the others wait on it, and
            # their commands must go out (or fail) whatever happens to this caller.
            with anyio.CancelScope(shield=True):
                async with self._sending:  # while the last write is in flight, more join
                    if self._open is group:
                        self._open = None
                    await self._send(group)
        else:
            mine = group.add(commands)
            await group.done.wait()
        if group.error is not None:
            raise RedisError(str(group.error)) from group.error
        return group.results[mine]

    async def _send(self, group: _Group) -> None:
        try:
            with anyio.fail_after(WRITE_TIMEOUT_SECONDS):
                async with self.client.pipeline(transaction=False) as pipe:
                    for command in group.commands:
                        pipe.execute_command(*command)
                    group.results = await pipe.execute(raise_on_error=False)
            self.writes += 1
        except (RedisError, OSError, TimeoutError) as exc:
            group.error = exc if not isinstance(exc, TimeoutError) else RedisError(str(exc))
        finally:
            group.done.set()
