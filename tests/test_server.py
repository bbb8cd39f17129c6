"""SIGTERM drains a real `tokenwire serve` process: streams finish, new requests get 503, exit 0."""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

CHAT = {
    "model": "echo",
    "stream": True,
    "messages": [{"role": "user", "content": " ".join(["w"] * 60)}],
}


def start_server(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokenwire.cli",
            "serve",
            "--backend",
            "echo",
            "--port",
            "0",
            "--backend-option",
            "delay=0.02",
            *flags,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "Uvicorn running on" in line:
            url = line.split("running on ")[1].split()[0]
            # Keep draining stderr so the server never blocks on a full pipe.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, url
    raise AssertionError("server did not start")


def stream_text(
    url: str, results: list[str], started: threading.Semaphore, body: dict[str, object] = CHAT
) -> None:
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
        chunks = response.iter_bytes()
        text = next(chunks)
        started.release()
        results.append((text + b"".join(chunks)).decode())


def start_streams(
    url: str, count: int, body: dict[str, object] = CHAT
) -> tuple[list[threading.Thread], list[str]]:
    """Start `count` streams and return once each has received its first bytes."""
    results: list[str] = []
    started = threading.Semaphore(0)
    threads = [
        threading.Thread(target=stream_text, args=(url, results, started, body))
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert started.acquire(timeout=10)
    return threads, results


def test_sigterm_drains_running_streams_then_exits_zero(tmp_path: Path) -> None:
    process, url = start_server(tmp_path)
    try:
        threads, results = start_streams(url, 4)  # 60 tokens × 20 ms: they run for over a second
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert httpx.get(f"{url}/health/ready").status_code == 503
        refused = httpx.post(f"{url}/v1/chat/completions", json=CHAT)
        assert refused.status_code == 503
        assert refused.json()["error"]["message"]
        for thread in threads:
            thread.join(10)
        assert process.wait(15) == 0
        assert len(results) == 4
        for body in results:
            assert body.rstrip().endswith("data: [DONE]")
            assert '"error"' not in body
    finally:
        process.kill()
        process.wait()
        process.stderr.close()  # type: ignore[union-attr]


def test_streams_past_the_drain_grace_end_with_an_in_band_error(tmp_path: Path) -> None:
    process, url = start_server(tmp_path, "--drain-grace", "0.3")
    try:
        long_chat = {**CHAT, "messages": [{"role": "user", "content": " ".join(["w"] * 500)}]}
        (thread,), results = start_streams(url, 1, long_chat)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        thread.join(10)
        assert process.wait(15) == 0
        assert time.monotonic() - started < 5
        events = [line[6:] for line in results[0].splitlines() if line.startswith("data: ")]
        assert "shutting down" in json.loads(events[-2])["error"]["message"]
        assert events[-1] == "[DONE]"
    finally:
        process.kill()
        process.wait()
        process.stderr.close()  # type: ignore[union-attr]
