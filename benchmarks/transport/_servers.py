"""Each benchmarked app runs in its own uvicorn process on 127.0.0.1, away from the client.

Run as `python -m benchmarks.transport._servers NAME --words N --loop L --http H`: it prints
`READY <port>` once listening. SIGINT stops it (and writes a cProfile dump when asked).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from benchmarks._shared.paths import REPO
from benchmarks.transport._apps import SERVERS, raw_emitter_app, sse_starlette_app, tokenwire_app
from benchmarks.transport._payloads import rendered_events

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """uvicorn settings shared by every server, so only the app differs."""

    loop: str
    http: str

    @classmethod
    def fastest_installed(cls) -> ServerSettings:
        """What uvicorn's `auto` picks: uvloop and httptools when installed."""
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
        return cls(loop, http)


def build_app(name: str, words: int) -> ASGIApp:
    if name == "tokenwire":
        return tokenwire_app()
    if name == "raw":
        return raw_emitter_app(rendered_events(words))
    if name == "sse-starlette":
        return sse_starlette_app(rendered_events(words))
    raise ValueError(f"unknown server {name!r}; known: {', '.join(SERVERS)}")


class ServerProcess:
    """A server child process; a context manager that starts it and stops it."""

    def __init__(
        self, name: str, *, words: int, settings: ServerSettings, profile: Path | None = None
    ) -> None:
        self.name = name
        command = [
            sys.executable, "-m", "benchmarks.transport._servers", name,
            "--words", str(words), "--loop", settings.loop, "--http", settings.http,
        ]  # fmt: skip
        if profile is not None:
            command += ["--profile", str(profile)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path[1:]])}
        self.process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        self.port = 0

    def __enter__(self) -> ServerProcess:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until READY, or EOF if it died
        if not line.startswith("READY "):
            self.process.kill()
            raise RuntimeError(f"server {self.name!r} failed to start (exit {self.process.wait()})")
        self.port = int(line.split()[1])
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT, not SIGTERM: uvicorn re-raises SIGTERM after shutting down, which
            # would kill the process before a profile is written.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far: schedstat's nanoseconds where the kernel
        has them, else user + system time in clock ticks (10 ms steps)."""
        proc = Path(f"/proc/{self.process.pid}")
        try:
            return int((proc / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def serve(name: str, words: int, settings: ServerSettings) -> None:
    app = build_app(name, words)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        loop=settings.loop,
        http=settings.http,
        workers=1,
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    config_started = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await config_started(sockets=sockets)
        print(f"READY {sock.getsockname()[1]}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it stopped on
        server.run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=SERVERS)
    parser.add_argument("--words", type=int, required=True)
    parser.add_argument("--loop", required=True)
    parser.add_argument("--http", required=True)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    settings = ServerSettings(args.loop, args.http)
    if args.profile is None:
        serve(args.name, args.words, settings)
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        serve(args.name, args.words, settings)
    finally:
        profiler.disable()
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
