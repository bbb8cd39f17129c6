"""The transport benchmark runs end to end (quick mode) and its parts count what they should."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks._shared.report import update_docs
from benchmarks.transport._client import SSEConnection
from benchmarks.transport._payloads import prompt_text, render_events
from benchmarks.transport._results import Settings

REPO = Path(__file__).resolve().parents[2]


def _chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def _replay(blobs: list[bytes]) -> SSEConnection:
    pending = iter(blobs)

    async def receive() -> bytes:
        return next(pending, b"")

    async def send(data: bytes) -> None:
        return None

    return SSEConnection(receive, send, b"")


@pytest.mark.anyio
async def test_client_counts_content_deltas_across_split_chunks_and_reads() -> None:
    wire = b"".join(event.wire for event in await render_events(7))
    # Chunks cut mid-line, and socket reads cut mid-chunk, as a real stream may be.
    body = _chunked([wire[i : i + 37] for i in range(0, len(wire), 37)])
    response = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body
    reads = [response[i : i + 101] for i in range(0, len(response), 101)]

    count = await _replay(reads).stream_chat(verify=True)

    # The opening role chunk and the finish chunk carry no content: 7 words, 7 tokens.
    assert count.tokens == 7
    assert count.done
    assert count.text == prompt_text(7)


@pytest.mark.anyio
async def test_client_refuses_a_non_200_response() -> None:
    response = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"
    with pytest.raises(Exception, match="unexpected status"):
        await _replay([response]).stream_chat()


def test_update_docs_replaces_only_its_own_block(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Other\nkept\n")
    update_docs(docs, "transport-ceiling", "first")
    update_docs(docs, "transport-ceiling", "second")
    text = docs.read_text()
    assert "## Other\nkept" in text
    assert "second" in text and "first" not in text
    assert text.count("<!-- transport-ceiling:start -->") == 1


def test_quick_run_measures_all_three_servers_and_writes_results(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "--only", "transport", "--quick"),
            *("--results-dir", str(tmp_path)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "tokenwire =" in result.stdout  # the printed table's ratio lines

    document = json.loads((tmp_path / "transport.json").read_text())
    quick = Settings.quick()
    summaries = document["summaries"]
    assert {(s["server"], s["scenario"]) for s in summaries} == {
        (server, scenario)
        for server in ("tokenwire", "raw", "sse-starlette")
        for scenario in ("single", "concurrent")
    }
    for summary in summaries:
        assert summary["tokens_per_second"] > 0
        assert summary["microseconds_per_token"] == pytest.approx(
            1e6 / summary["tokens_per_second"]
        )
        assert summary["server_cpu_microseconds_per_token"] > 0
    for sample in document["samples"]:
        streams = 1 if sample["scenario"] == "single" else quick.concurrency
        requests = (
            quick.single_requests if sample["scenario"] == "single" else quick.requests_per_stream
        )
        assert sample["tokens"] == quick.words * streams * requests
        assert sample["seconds"] > 0
    for comparison in document["comparisons"]:
        assert comparison["vs_raw"] > 0 and comparison["vs_sse_starlette"] > 0
    assert document["client"]["parse_tokens_per_second"] > 0
    assert document["machine"]["cores"] >= 1
    assert document["server_settings"]["loop"] in ("uvloop", "asyncio")
