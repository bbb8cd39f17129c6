"""Child processes the ONNX benchmark drives: HTTP model servers and line-protocol workers.

Every system under test runs in its own process, so one client process measures them all
alike, and each one's memory is its own (`/proc/PID/status`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from benchmarks._shared.paths import REPO
from benchmarks._shared.proc_stats import rss_bytes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RssSampler:
    """Samples a process's RSS in a thread; `peak()` is the largest seen since `reset()`."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._peak = max(self._peak, rss_bytes(self.pid))
            except OSError:
                return

    def reset(self) -> None:
        self._peak = rss_bytes(self.pid)

    def peak(self) -> int:
        return max(self._peak, rss_bytes(self.pid))

    def stop(self) -> None:
        self._stop.set()


class _Child:
    process: subprocess.Popen[str]
    name: str

    def _stop(self, sig: int = signal.SIGINT) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        self._stop()

    @property
    def pid(self) -> int:
        return self.process.pid


C = TypeVar("C", bound=_Child)


def managed(stack: ExitStack, child: C) -> C:
    """Stop `child` when `stack` closes."""
    stack.callback(child.close)
    return child


class HttpServer(_Child):
    """A model server speaking the OpenAI chat API on 127.0.0.1:`port`."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        ready_path: str = "/v1/models",
        timeout: float = 180.0,
    ) -> None:
        self.name = name
        self.port = port
        self.model_id = "default"
        self.command = list(command)
        out = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.process.returncode} (log: {log})")
            try:
                response = httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2)
                if response.status_code == 200:
                    # The model id requests must name (OpenAI's model list shape).
                    self.model_id = str(response.json()["data"][0]["id"])
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{name} did not become ready in {timeout:.0f} s (log: {log})")
            time.sleep(0.2)


@dataclass(frozen=True, slots=True)
class WorkerAnswer:
    prompt_tokens: int
    arrivals: list[float]
    text: str


class Worker(_Child):
    """A generator in a child process, driven over `benchmarks.onnx_backend._worker_protocol`."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        timeout: float = 300.0,
    ) -> None:
        self.name = name
        err = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            list(command),
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "READY":
            self.close()
            raise RuntimeError(f"worker {name} failed to start (log: {log})")
        del timeout

    def generate(self, prompt: str, max_tokens: int, batch: int = 1) -> WorkerAnswer:
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {"prompt": prompt, "max_tokens": max_tokens, "batch": batch}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died (exit {self.process.wait()})")
        answer = json.loads(line)
        return WorkerAnswer(answer["prompt_tokens"], answer["arrivals"], answer["text"])

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.close()
                self.process.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._stop(signal.SIGKILL)


def tokenwire_command(model: Path, port: int, options: Mapping[str, object]) -> list[str]:
    """`tokenwire serve` for `model` with backend options, as an operator would run it."""
    command = [
        str(Path(sys.executable).parent / "tokenwire"), "serve", "--backend", "onnx",
        "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--no-playground", "--log-level", "warning",
    ]  # fmt: skip
    for key, value in options.items():
        # The CLI reads values as JSON: `False` would arrive as the string "False".
        raw = value if isinstance(value, str) else json.dumps(value)
        command += ["--backend-option", f"{key}={raw}"]
    return command
