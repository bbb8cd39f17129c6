"""The server the soak drives: tokenwire as `tokenwire serve` builds it, plus debug routes.

Run as `python -m benchmarks.soak._server --backend echo|onnx [...]`: prints `READY <port>`.
`/debug/stats` shows what must return to rest between runs (slots, streams, buffered
bytes, event-loop tasks, RSS); `/debug/break` and `/debug/repair` make the ONNX model's
runs fail and work again, for the readiness measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from tokenwire import TokenwireMiddleware
from tokenwire.backends.echo import EchoBackend
from tokenwire.interfaces import Backend
from tokenwire.limits import Limits
from tokenwire.middlewares.metrics import MetricsMiddleware

# The kernel's send buffer per connection. Left alone it grows to ~4 MB on loopback, so a
# slow reader would not push back on the server until megabytes were written.
SEND_BUFFER = 64 * 1024


class FailingSession:
    """An ORT session whose runs raise (the model "breaks")."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def run_with_iobinding(self, *args: Any) -> Any:
        raise RuntimeError("injected fault: the model's runs fail")


@dataclass(slots=True)
class SoakApp:
    app: ASGIApp
    backend: Backend
    registry: CollectorRegistry


def build_soak_app(backend: Backend, limits: Limits = Limits()) -> SoakApp:
    """tokenwire with the metrics middleware, the buffered-bytes gauge and debug routes."""
    registry = CollectorRegistry()
    host_app = Starlette()
    app = TokenwireMiddleware(
        host_app,
        backend=backend,
        middlewares=[functools.partial(MetricsMiddleware, registry=registry)],
        limits=limits,
    )
    async def stats(request: Request) -> JSONResponse:
        backend_stats = getattr(backend, "stats", None)
        body: dict[str, Any] = {
            "active_streams": app.host.active_streams,
            # The app exports its buffered-bytes gauge into the metrics registry.
            "buffered_bytes": int(
                registry.get_sample_value("tokenwire_stream_buffered_bytes") or 0
            ),
            # Benchmark code, not tokenwire's: counting the loop's tasks needs asyncio.
            "tasks": len(asyncio.all_tasks()),
            "rss_bytes": _rss(),
            "healthy": app.host.healthy,
        }
        if backend_stats is not None:
            body.update(
                free_slots=backend_stats.free_slots,
                max_batch=getattr(backend, "max_batch", 0),
                running=backend_stats.running,
                prefilling=backend_stats.prefilling,
                waiting=backend_stats.waiting,
            )
        return JSONResponse(body)

    async def fault(request: Request) -> JSONResponse:
        loop = getattr(backend, "_loop", None)
        if loop is None:
            return JSONResponse({"error": "no decode loop"}, status_code=400)
        runner = loop.runner
        broken = isinstance(runner.session, FailingSession)
        if request.path_params["action"] == "break" and not broken:
            runner.session = FailingSession(runner.session)
        elif request.path_params["action"] == "repair" and broken:
            runner.session = runner.session.session
        return JSONResponse({"broken": isinstance(runner.session, FailingSession)})

    host_app.router.routes.extend(
        [
            Route("/debug/stats", stats, methods=["GET"]),
            Route("/debug/{action:str}", fault, methods=["POST"]),
        ]
    )
    return SoakApp(app, backend, registry)


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def listening_socket(send_buffer: int | None = SEND_BUFFER) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    return sock


def make_backend(name: str, *, delay: float, model: Path | None, max_batch: int) -> Backend:
    if name == "echo":
        return EchoBackend(delay=delay)
    from tokenwire.backends.onnx import OnnxBackend

    return OnnxBackend(model, max_batch=max_batch, max_queue=256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["echo", "onnx"], required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--slow-client-policy", default="coalesce")
    args = parser.parse_args()
    backend = make_backend(
        args.backend, delay=args.delay, model=args.model, max_batch=args.max_batch
    )
    soak = build_soak_app(backend, Limits(slow_client_policy=args.slow_client_policy))
    sock = listening_socket()
    config = uvicorn.Config(
        soak.app, lifespan="on", log_level="warning", access_log=False, workers=1
    )
    server = uvicorn.Server(config)
    started = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await started(sockets=sockets)
        print(f"READY {sock.getsockname()[1]} {os.getpid()}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


if __name__ == "__main__":
    main()
