"""What replicas share about running resumable streams: who produces each (a lease), whether
anyone reads it (presence), and cancels by id. `LocalStreamControl` is the one-replica form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import anyio

CancelLocal = Callable[[str], int]
"""Cancels the requests with this id running in this process; returns how many there were."""


class StreamControl(Protocol):
    """Leases, reader presence and cancels for resumable streams, shared by replicas."""

    replica: str

    async def claim(self, request_id: str, seconds: float) -> int | None:
        """Take the producer's lease; its fencing generation, or None when another holds it."""
        ...

    async def renew(self, request_id: str, generation: int, seconds: float) -> bool:
        """Extend the lease; False when it is no longer ours (the producer must stop)."""
        ...

    async def release(self, request_id: str, generation: int) -> None: ...

    async def touch(self, request_id: str, seconds: float) -> None:
        """A reader is attached (or just left): the stream is wanted for `seconds` more."""
        ...

    async def present(self, request_id: str) -> bool:
        """Whether a reader on any replica was attached within its last touch's seconds."""
        ...

    async def cancel(self, request_id: str) -> bool:
        """Cancel the stream wherever it runs; False when no replica produces it."""
        ...

    async def cancel_requested(self, request_id: str) -> bool:
        """Whether a cancel was asked for (the owner polls it besides being told)."""
        ...

    async def serve_cancels(self, cancel: CancelLocal) -> None:
        """Run `cancel` for the cancels other replicas send, until cancelled."""
        ...


class LocalStreamControl:
    """One replica: the lease is always ours, presence is a deadline per stream."""

    replica = "local"

    def __init__(self) -> None:
        self.wanted_until: dict[str, float] = {}

    async def claim(self, request_id: str, seconds: float) -> int | None:
        return 1

    async def renew(self, request_id: str, generation: int, seconds: float) -> bool:
        return True

    async def release(self, request_id: str, generation: int) -> None:
        self.wanted_until.pop(request_id, None)

    async def touch(self, request_id: str, seconds: float) -> None:
        self.wanted_until[request_id] = anyio.current_time() + seconds

    async def present(self, request_id: str) -> bool:
        return self.wanted_until.get(request_id, 0.0) > anyio.current_time()

    async def cancel(self, request_id: str) -> bool:
        return False  # nobody else to ask; the caller cancelled what runs here

    async def cancel_requested(self, request_id: str) -> bool:
        return False

    async def serve_cancels(self, cancel: CancelLocal) -> None:
        await anyio.sleep_forever()
