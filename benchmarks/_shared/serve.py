"""`tokenwire serve` in a process of its own, on a free loopback port, for benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from benchmarks._shared.paths import REPO


class ServeProcess:
    """`tokenwire serve ARGS` importing this checkout's code (and its upstream plugin)."""

    def __init__(self, args: Sequence[str]) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        command = [
            sys.executable, "-c", "import sys; from tokenwire.cli import main; sys.exit(main())",
            "serve", "--port", str(self.port), "--log-level", "warning", "--no-playground", *args,
        ]  # fmt: skip
        paths = [str(REPO / "src"), str(REPO / "plugins" / "tokenwire-upstream" / "src")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        self.process = subprocess.Popen(command, cwd=REPO, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    @classmethod
    def onnx(cls, model: Path, middlewares: Sequence[str]) -> ServeProcess:
        """`tokenwire serve --backend onnx --model DIR` with the given middlewares."""
        args = ["--backend", "onnx", "--model", str(model)]
        for name in middlewares:
            args += ["--middleware", name]
        return cls(args)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tokenwire serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("tokenwire serve did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
