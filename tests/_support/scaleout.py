"""Real scale-out parts for tests: a `redis-server` and an HAProxy on free loopback ports,
and `tokenwire serve` processes behind them. Missing packages are installed by
scripts/install-scaleout.sh (as the browser tests install Chromium)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install-scaleout.sh"
REDIS_SERVER = "/usr/bin/redis-server"
HAPROXY = "/usr/sbin/haproxy"


def ensure_scaleout_parts() -> None:
    """Install redis-server, haproxy and the redis client when missing; fail when that fails."""
    try:
        import redis.asyncio  # noqa: F401

        client = True
    except ImportError:
        client = False
    if client and Path(REDIS_SERVER).exists() and Path(HAPROXY).exists():
        return
    env = {**os.environ, "TOKENWIRE_PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900, check=False,
        env=env,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(
            f"{INSTALL_SCRIPT.name} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )


def free_port() -> int:
    # Redis cannot listen on port 0: pick a free port and hand it over (a tiny race, retried).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class RedisServer:
    """`redis-server` without persistence on a free port; `restart()` loses every key."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="tokenwire-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        _wait_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    ensure_scaleout_parts()
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


class ServeProcess:
    """`tokenwire serve` in a process of its own, importing this checkout's code."""

    def __init__(self, args: Sequence[str]) -> None:
        self.port = free_port()
        command = [
            sys.executable, "-c", "import sys; from tokenwire.cli import main; sys.exit(main())",
            "serve", "--port", str(self.port), "--log-level", "warning", "--no-playground", *args,
        ]  # fmt: skip
        paths = [str(REPO / "src"), str(REPO / "plugins" / "tokenwire-upstream" / "src")]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
        }
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"tokenwire serve exited with {self.process.returncode}: {err}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("tokenwire serve did not become ready")

    def kill(self) -> None:
        """SIGKILL: the process dies without a word to anyone (its leases just expire)."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


_HAPROXY_CONFIG = """\
global
    maxconn 1000
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option http-server-close
frontend tokenwire
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
{options}{servers}
"""


@contextmanager
def running_haproxy(backends: Sequence[str], options: Sequence[str] = ()) -> Iterator[str]:
    """HAProxy round-robin, no stickiness, a new backend per request; yields its URL.
    `options` are extra lines for the backend section (e.g. `option redispatch 1`)."""
    ensure_scaleout_parts()
    port = free_port()
    servers = "\n".join(
        f"    server r{i} {url.removeprefix('http://')}" for i, url in enumerate(backends)
    )
    directory = tempfile.mkdtemp(prefix="tokenwire-haproxy-")
    config = Path(directory) / "haproxy.cfg"
    extra = "".join(f"    {line}\n" for line in options)
    config.write_text(_HAPROXY_CONFIG.format(port=port, servers=servers, options=extra))
    process = subprocess.Popen([HAPROXY, "-f", str(config), "-db"], stdout=subprocess.DEVNULL)
    try:
        _wait_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Cluster:
    """Replicas of `tokenwire serve` sharing a redis-server, behind a round-robin HAProxy."""

    url: str
    redis: RedisServer
    replicas: list[ServeProcess]


@contextmanager
def running_cluster(args: Sequence[str], replicas: int = 3) -> Iterator[Cluster]:
    """`replicas` × `tokenwire serve <args> --stream-store <redis>` behind HAProxy."""
    with running_redis() as redis_server:
        processes = [
            ServeProcess([*args, "--stream-store", redis_server.url]) for _ in range(replicas)
        ]
        try:
            for process in processes:
                process.wait_ready()
            with running_haproxy([p.url for p in processes]) as url:
                yield Cluster(url, redis_server, processes)
        finally:
            for process in processes:
                process.stop()
