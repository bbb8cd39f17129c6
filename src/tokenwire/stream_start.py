"""`StreamStart`: how far a call got before its first payload, shared by the task that renders
it and the transport that frames it.

A call is *admitted* once its backend reports any `Progress` (queued, prefill or decode): the
request passed validation and the backend accepted it, so what remains to fail is the
generation itself. From then on a transport may *commit* to a 200 before the first token
(send its headers and keep-alives); a failure after that goes in band. The two sides meet
here so that exactly one of "refused with a real status" and "failed in band" happens.
"""

from __future__ import annotations

import anyio


class StreamStart:
    """A call's state before its first payload: admitted, committed to 200, or failed."""

    __slots__ = ("_admitted_event", "admitted", "committed", "failed")

    def __init__(self) -> None:
        self.admitted = False
        self.committed = False
        self.failed = False
        self._admitted_event: anyio.Event | None = None  # made by the first waiter

    def admit(self) -> None:
        """The backend accepted the request."""
        self.admitted = True
        if self._admitted_event is not None:
            self._admitted_event.set()

    async def wait_admitted(self) -> None:
        if self.admitted:
            return
        if self._admitted_event is None:
            self._admitted_event = anyio.Event()
        await self._admitted_event.wait()

    def commit(self) -> bool:
        """The transport is about to send its headers; False when the call failed already (it
        must then be refused with the error's status instead)."""
        if self.failed:
            return False
        self.committed = True
        return True

    def fail_early(self) -> bool:
        """The call failed before its first payload: True when the response has begun (the
        failure goes in band); otherwise no transport may begin it any more."""
        if self.committed:
            return True
        self.failed = True
        return False
