"""A `redis-server` without persistence and `tokenwire serve --backend echo` processes, on
free loopback ports, importing this checkout's code."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import httpx

from benchmarks._shared.paths import REPO

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


class EchoServe:
    """`tokenwire serve --backend echo --resume-grace 30 [--stream-store URL]` (another
    backend with `backend`, e.g. `onnx` with `--model DIR` in `extra`)."""

    def __init__(
        self, store: str | None, extra: Sequence[str] = (), *, backend: str = "echo"
    ) -> None:
        self.port = free_port()
        command = [
            sys.executable, "-c", "import sys; from tokenwire.cli import main; sys.exit(main())",
            "serve", "--backend", backend, "--port", str(self.port), "--log-level", "warning",
            "--no-playground", "--resume-grace", "30", "--max-tokens", "0", *extra,
        ]  # fmt: skip
        if store is not None:
            command += ["--stream-store", store]
        paths = [str(REPO / "src"), str(REPO / "plugins" / "tokenwire-upstream" / "src")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        self.process = subprocess.Popen(command, cwd=REPO, env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise TimeoutError("tokenwire serve did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
