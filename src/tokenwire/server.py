"""`tokenwire serve`'s server: uvicorn, plus a drain on SIGTERM that ends with exit code 0.

On the first SIGTERM or SIGINT, readiness turns 503 and new requests get 503 in their
dialect's shape while the listener stays open; running streams finish, or, once
`drain_grace` seconds have passed, end with an in-band error. Then uvicorn shuts down as
usual. A second signal exits at once. (uvicorn alone closes its listener at once and re-raises
the signal, so the process would exit 143 with streams cut.)
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from tokenwire.host import BackendHost

logger = logging.getLogger("tokenwire")

# Time the aborted streams get to send their in-band error before the server stops.
_ABORT_FLUSH_SECONDS = 1.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, host: BackendHost, drain_grace: float) -> None:
        super().__init__(config)
        self.host = host
        self.drain_grace = drain_grace
        self.drain_started: float | None = None
        self.aborted_at: float | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is None:
            logger.info(
                "received %s: draining %d running stream(s), grace %.0f s",
                signal.Signals(sig).name,
                self.host.active_streams,
                self.drain_grace,
            )
            self.drain_started = time.monotonic()
            self.host.drain()
        else:
            logger.warning("received %s again: exiting now", signal.Signals(sig).name)
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        if self.drain_started is None:
            return False
        now = time.monotonic()
        if self.host.active_streams == 0:
            logger.info("drained in %.2f s", now - self.drain_started)
            return True
        if self.aborted_at is None and now - self.drain_started >= self.drain_grace:
            count = self.host.abort_streams()
            logger.warning("drain grace ran out: ended %d stream(s) with an error", count)
            self.aborted_at = now
        return self.aborted_at is not None and now - self.aborted_at >= _ABORT_FLUSH_SECONDS


def run_server(
    app: Starlette,
    *,
    host: str,
    port: int,
    drain_grace: float = 20.0,
    shutdown_timeout: float = 5.0,
    log_config: dict[str, Any] | None = None,
) -> None:
    """Serve `app` (from `create_app`) until SIGTERM/SIGINT, draining streams first.

    The timeout chain: `drain_grace` for streams to finish, then `shutdown_timeout` for
    uvicorn to close connections; keep their sum below the pod's
    `terminationGracePeriodSeconds`.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=log_config,
        access_log=False,  # tokenwire.access logs each request with its id instead
        timeout_graceful_shutdown=math.ceil(shutdown_timeout),
    )
    DrainingServer(config, app.state.tokenwire_host, drain_grace).run()
