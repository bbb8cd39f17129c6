"""The ONNX backend benchmark runs end to end (quick mode, tiny fixture model) and its parts
measure what they claim: the timed client stamps every delta, the bare loop decodes what
tokenwire decodes, and the bandwidth bound reads the graph's weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from benchmarks._shared.bandwidth import weight_bytes
from benchmarks.onnx_backend._processes import tokenwire_command
from benchmarks.onnx_backend._scenarios import percentile
from benchmarks.onnx_backend._timed import chat_body, stream_chat

from tests.backends.onnx.tiny_models import TinyConfig, write_model_dir
from tokenwire.config import parse_option

REPO = Path(__file__).resolve().parents[2]


def _sse(*payloads: str) -> bytes:
    return b"".join(b"data: " + p.encode() + b"\n\n" for p in payloads)


@pytest.mark.anyio
async def test_timed_client_stamps_each_content_delta_and_prefers_usage() -> None:
    events = [
        _sse('{"choices":[{"delta":{"role":"assistant","content":""}}]}'),
        _sse('{"choices":[{"delta":{"content":"Hel"}}]}'),
        _sse('{"choices":[{"delta":{"content":"lo"}}]}'),
        _sse('{"choices":[{"delta":{}, "finish_reason":"stop"}]}'),
        _sse('{"choices":[],"usage":{"completion_tokens":3}}', "[DONE]"),
    ]

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client:
            await client.receive()
            await client.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for event in events:
                await client.send(b"%x\r\n%s\r\n" % (len(event), event))
                await anyio.sleep(0.03)
            await client.send(b"0\r\n\r\n")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    stamped: list[float] = []
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        stream = await stream_chat(port, chat_body("hi", 3), on_token=stamped.append)
        tg.cancel_scope.cancel()

    assert stream.text == "Hello"
    assert len(stream.arrivals) == len(stamped) == 2  # the empty role delta is no token
    assert stream.completion_tokens == 3  # usage wins over the delta count
    assert stream.arrivals[1] - stream.arrivals[0] >= 0.02  # stamped on arrival, not at the end
    assert stream.decode_tokens_per_second == pytest.approx(
        2 / (stream.arrivals[1] - stream.arrivals[0])
    )


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values[:20], 99) == 20  # p99 of 20 samples is the largest


def test_weight_bytes_count_a_gathered_table_one_row_per_token(tmp_path: Path) -> None:
    config = TinyConfig()
    model = write_model_dir(tmp_path / "tiny", "shared", config) / "model.onnx"
    weights = weight_bytes(model)
    embedding = config.vocab * config.hidden * 4
    assert weights.initializer_bytes >= embedding
    assert weights.file_bytes >= weights.initializer_bytes
    assert (
        weights.per_token_bytes == weights.initializer_bytes - embedding + embedding // config.vocab
    )


def test_server_command_passes_backend_options_as_the_cli_reads_them() -> None:
    options = {"allow_spinning": False, "prefill_budget_ms": 0.0, "prefill_chunk": 256}
    command = tokenwire_command(Path("model"), 8000, options)
    passed = [command[i + 1] for i, arg in enumerate(command) if arg == "--backend-option"]
    assert dict(parse_option(text) for text in passed) == options
    assert passed[0] == "allow_spinning=false"


def test_quick_run_measures_every_phase_and_writes_results(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "tiny", "shared")
    results = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "onnx_backend", "--quick",
         "--results-dir", str(results)],
        cwd=REPO,
        env={**os.environ, "TOKENWIRE_BENCH_MODEL": str(model)},
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Single stream" in result.stdout
    assert "`prefill_budget_ms=30`" in result.stdout  # the served budget, named in the report

    document = json.loads((results / "onnx_backend.json").read_text())
    settings = document["settings"]
    single = {s["system"]: s for s in document["single"]}
    assert set(single) == {"tokenwire-fp32", "bare-fp32"}
    for row in single.values():
        assert row["decode_tokens_per_second"] > 0 and row["ttft_ms"] > 0
        assert row["rounds"] == settings["rounds"]
    # Greedy on one model: the server's text is the bare loop's (up to the server's EOS stop).
    served, bare = single["tokenwire-fp32"]["text"], single["bare-fp32"]["text"]
    assert served and bare.startswith(served)

    assert [s["streams"] for s in document["scaling"]] == settings["streams"]
    for level in document["scaling"]:
        assert level["aggregate_tokens_per_second"] > 0
        assert level["bare_batch_tokens_per_second"] > 0
        assert level["peak_rss_mb"] > 0
    assert {(t["prompt"], t["load_streams"] > 0) for t in document["ttft"]} == {
        (p, loaded) for p in ("short", "long") for loaded in (False, True)
    }
    assert all(t["p99_ms"] >= t["p50_ms"] > 0 for t in document["ttft"])
    (gap,) = document["gaps"]
    assert gap["prefill_budget_ms"] == settings["prefill_budget_ms"]  # the served server's row
    assert gap["long_prompts"] >= 1 and gap["busy_max_ms"] >= gap["busy_p50_ms"] > 0
    assert document["bandwidth"]["read_gb_per_second"] > 0
    (bound,) = document["bandwidth"]["rows"]
    assert bound["bound_tokens_per_second"] > 0
    env = document["environment"]
    assert env["intra_op_threads"] == settings["threads"]
    assert env["prefill_chunk"] == settings["prefill_chunk"]
    assert env["prefill_budget_ms"] == settings["prefill_budget_ms"]
    assert len(env["load_before"]) == 3 and len(env["load_after"]) == 3
    assert document["peak_rss"]["tokenwire-fp32"] > 0
