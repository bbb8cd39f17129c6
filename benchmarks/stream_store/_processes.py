"""A `redis-server` without persistence and `tokenwire serve --backend echo` processes, on
free loopback ports, importing this checkout's code."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence

from benchmarks._shared.serve import ServeProcess

REDIS_SERVER = "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisProcess:
    """`redis-server --save "" --appendonly no` on a free port (Redis cannot bind port 0)."""

    def __init__(self) -> None:
        if not os.path.exists(REDIS_SERVER):
            raise RuntimeError("redis-server is missing: run scripts/install-scaleout.sh")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tokenwire-bench-redis-")
        command = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def echo_serve(
    store: str | None, extra: Sequence[str] = (), *, backend: str = "echo"
) -> ServeProcess:
    """A ready `tokenwire serve --backend echo --resume-grace 30 [--stream-store URL]`
    (another backend with `backend`, e.g. `onnx` with `--model DIR` in `extra`)."""
    args = ["--backend", backend, "--resume-grace", "30", "--max-tokens", "0", *extra]
    if store is not None:
        args += ["--stream-store", store]
    server = ServeProcess(args)
    try:
        server.wait_ready(timeout=60)
    except BaseException:
        server.stop()
        raise
    return server
