"""A request that waits in the backend's queue, behind a real HAProxy with a 2 s idle timeout:
early headers and keep-alives keep it alive; without them the proxy cuts it.

HAProxy comes from scripts/install-haproxy.sh (run here when it is missing, as root on CI).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.asgi import sse_events
from tests._support.backends import QueuedBackend
from tests._support.server import running_server
from tokenwire import create_app

INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-haproxy.sh"
IDLE_TIMEOUT = 2  # seconds, the proxy's `timeout client` and `timeout server`
QUEUED = 8.0  # seconds the backend keeps the request queued: four idle timeouts
CHAT = {"model": "queued", "stream": True, "messages": [{"role": "user", "content": "x"}]}


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found is None:
        result = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600, check=False
        )
        found = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if result.returncode != 0 or not Path(found).exists():
            pytest.fail(
                f"{INSTALL_SCRIPT.name} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def haproxy() -> str:
    return haproxy_binary()


@contextmanager
def proxied(haproxy: str, upstream: str, workdir: Path) -> Iterator[str]:
    """HAProxy on loopback in front of `upstream` (http://127.0.0.1:PORT); yields its URL."""
    port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(
        f"""
defaults
    mode http
    timeout connect 2s
    timeout client {IDLE_TIMEOUT}s
    timeout server {IDLE_TIMEOUT}s

frontend edge
    bind 127.0.0.1:{port}
    default_backend tokenwire

backend tokenwire
    server one {upstream.removeprefix("http://")}
"""
    )
    log = workdir / "haproxy.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"haproxy did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def post_through_proxy(haproxy: str, tmp_path: Path, **options: Any) -> tuple[int, bytes, str]:
    """POST a chat stream through the proxy; (status, body, how it ended)."""
    backend = QueuedBackend(["Made", " it"], queued_for=QUEUED)
    app = create_app(backend, keepalive_seconds=0.5, **options)
    with running_server(app) as upstream, proxied(haproxy, upstream, tmp_path) as url:
        body = b""
        try:
            with httpx.stream(
                "POST", f"{url}/v1/chat/completions", json=CHAT, timeout=QUEUED + 10
            ) as response:
                for chunk in response.iter_bytes():
                    body += chunk
            return response.status_code, body, "complete"
        except httpx.RemoteProtocolError:
            return response.status_code, body, "cut"


def test_keepalives_carry_a_queued_request_through_an_idle_timeout_proxy(
    haproxy: str, tmp_path: Path
) -> None:
    status, body, ended = post_through_proxy(haproxy, tmp_path, early_headers_after=0.2)
    assert (status, ended) == (200, "complete")
    events = sse_events(body)
    assert events[0] == {"comment": "keep-alive"}
    assert events[-1]["data"] == "[DONE]"
    assert b"Made" in body and b" it" in body


def test_without_early_headers_the_proxy_cuts_the_queued_request(
    haproxy: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    status, body, _ = post_through_proxy(haproxy, tmp_path, early_headers_after=None)
    assert status == 504  # HAProxy's gateway timeout: no response within `timeout server`
    assert b"Made" not in body
    assert time.monotonic() - started < QUEUED
