"""One layer's attention, every way ONNX Runtime offers it on CPU, side by side in one run.

Issue 18, part 0: ORT's CPU `GroupQueryAttention` takes about a third of a 545-token
prefill and half a batch-8 decode step. This times that one op, configured exactly as the
model's builder graph configures it (attributes read from the model, packed or split QKV
as the model feeds it, the shared KV buffer bound as both past and present as
`SharedKVCache.bind` does), against what could replace it:

- GQA with its flash path off (`ORT_GQA_DISABLE_FLASH_ATTENTION=1`, read when the kernel
  is built) and with rotary off (the plain graphs below do no rotary);
- plain fp32 ONNX ops: MatMul Q·Kᵀ with the KV heads repeated, scale, additive mask,
  Softmax, MatMul ·V; and the same with the KV heads grouped instead of repeated
  (the 3 query heads of a KV head stacked as rows, so Kᵀ is never copied);
- the plain graph writing the shared buffer itself (`TensorScatter`, opset 24, in place);
- `com.microsoft.MultiHeadAttention` (KV heads repeated: it has no GQA) and the ONNX
  `Attention` op (opset 23, `q_num_heads`/`kv_num_heads`).

Shapes: a prompt of `prompt_tokens` (batch 1, no past) and a decode step of
`decode_batch` rows over `decode_past` past positions. The variants take turns in
blocks of runs (see `_block`), medians. Also timed: copying a run's new keys and values
into the shared buffer from numpy (what a graph that returns them leaves to the runner).
Last, the model's own graphs with GQA's flash path on and off, to check the one-layer
figures against the whole run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks._shared import report
from benchmarks._shared.prepared_model import find_model
from benchmarks._shared.standalone import run_standalone
from benchmarks.prefill._attention_graphs import (
    Shape,
    fused_graph,
    gqa_graph,
    plain_graph,
    read_shape,
)
from benchmarks.prefill.benchmark import _Graph
from tokenwire.backends.onnx.manifest import ModelManifest

SECTION = "prefill-attention"


@dataclass(frozen=True, slots=True)
class Settings:
    prompt_tokens: int = 545
    decode_batch: int = 8
    decode_past: int = 600
    rounds: int = 5  # rounds of blocks, the variants taking turns
    block: int = 5  # timed runs per block, after an untimed one
    whole_rounds: int = 12
    whole_block: int = 1
    threads: int = 2
    max_context: int | None = None  # None: the model's, as the backend binds by default

    @classmethod
    def quick(cls) -> Settings:
        return cls(prompt_tokens=12, decode_batch=2, decode_past=9, rounds=1, block=1, whole_rounds=1, whole_block=1,
                   max_context=32)  # fmt: skip


# -- runs --------------------------------------------------------------------------------


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    old = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if value is not None and old is None:
            del os.environ[name]
        elif old is not None:
            os.environ[name] = old


def _session(model: bytes, threads: int, env: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    with _env("ORT_GQA_DISABLE_FLASH_ATTENTION", env):  # the GQA kernel reads it when built
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class Case:
    """One shape: its inputs, and one shared KV buffer pair bound in place."""

    def __init__(self, s: Shape, batch: int, tokens: int, past: int, seed: int = 0) -> None:
        self.s, self.batch, self.tokens, self.past = s, batch, tokens, past
        self.total = past + tokens
        rng = np.random.default_rng(seed)
        width = (s.heads + 2 * s.kv_heads) * s.head
        self.qkv = rng.standard_normal((batch, tokens, width), dtype=np.float32)
        q, k, v = np.split(self.qkv, [s.heads * s.head, (s.heads + s.kv_heads) * s.head], axis=2)
        self.q, self.k, self.v = (np.ascontiguousarray(x) for x in (q, k, v))
        self.buffers = [rng.standard_normal((batch, s.kv_heads, s.max_context, s.head),
                                            dtype=np.float32) for _ in range(2)]  # fmt: skip
        self.ort_buffers = [ort.OrtValue.ortvalue_from_numpy(b) for b in self.buffers]
        self.full_kv = [np.concatenate([b[:, :, :past].transpose(0, 2, 1, 3).reshape(batch, past, s.kv_heads * s.head),
                                        new], axis=1) for b, new in zip(self.buffers, (self.k, self.v),
                                                                        strict=True)]  # fmt: skip
        causal = np.triu(np.full((tokens, self.total), -np.inf, np.float32), past + 1)
        self.mask = np.ascontiguousarray(np.broadcast_to(causal, (batch, 1, tokens, self.total)))
        angles = np.arange(s.rotary_rows)[:, None] / 10000 ** (np.arange(0, s.head, 2) / s.head)
        self.cos, self.sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)

    def _qkv(self, binding: ort.IOBinding) -> None:
        if self.s.packed:
            binding.bind_cpu_input("qkv", self.qkv)
        else:
            for name, x in zip("qkv", (self.q, self.k, self.v), strict=True):
                binding.bind_cpu_input(name, x)

    def _kv(self, binding: ort.IOBinding, outputs: tuple[str, str] | None) -> None:
        shape = list(self.buffers[0].shape)
        for i, name in enumerate(("past_key", "past_value")):
            pointer = self.ort_buffers[i].data_ptr()
            binding.bind_input(name, "cpu", 0, np.float32, shape, pointer)
            if outputs is not None:
                binding.bind_output(outputs[i], "cpu", 0, np.float32, shape, pointer)

    def gqa(self, session: ort.InferenceSession) -> Callable[[], np.ndarray]:
        binding = session.io_binding()
        binding.bind_output("out", "cpu")  # first: the runner returns the first output bound
        self._qkv(binding)
        self._kv(binding, ("present_key", "present_value"))
        binding.bind_cpu_input("seqlens_k", np.full(self.batch, self.total - 1, np.int32))
        binding.bind_cpu_input("total", np.array(self.total, np.int32))
        binding.bind_cpu_input("cos_cache", self.cos)
        binding.bind_cpu_input("sin_cache", self.sin)
        return self._runner(session, binding)

    def plain(self, session: ort.InferenceSession, scatter: bool) -> Callable[[], np.ndarray]:
        binding = session.io_binding()
        binding.bind_output("out", "cpu")
        self._qkv(binding)
        self._kv(binding, ("present_k", "present_v") if scatter else None)
        binding.bind_cpu_input("mask", self.mask)
        binding.bind_cpu_input("past", np.array([self.past], np.int64))
        binding.bind_cpu_input("total", np.array([self.total], np.int64))
        if not scatter:
            binding.bind_output("new_k", "cpu")
            binding.bind_output("new_v", "cpu")
        return self._runner(session, binding)

    def fused(self, session: ort.InferenceSession) -> Callable[[], np.ndarray]:
        feeds = {"q": self.q, "k": self.full_kv[0], "v": self.full_kv[1]}
        return lambda: np.asarray(session.run(["out"], feeds)[0])

    def kv_write(self) -> Callable[[], np.ndarray]:
        """numpy copies of the run's new K and V into the buffer's rows (what the runner
        would do for a graph that returns them)."""
        new = [np.ascontiguousarray(x.reshape(self.batch, self.tokens, self.s.kv_heads, -1)
                                    .transpose(0, 2, 1, 3)) for x in (self.k, self.v)]  # fmt: skip

        def write() -> np.ndarray:
            for buffer, values in zip(self.buffers, new, strict=True):
                buffer[:, :, self.past : self.total] = values
            return new[0]

        return write

    @staticmethod
    def _runner(session: ort.InferenceSession, binding: ort.IOBinding) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            session.run_with_iobinding(binding)
            return np.asarray(binding.get_outputs()[0].numpy())

        return run


def variants(s: Shape, case: Case, threads: int) -> dict[str, Callable[[], np.ndarray]]:
    """Every way to run the case that this ORT build accepts; refusals are reported."""
    makers: dict[str, Callable[[], Callable[[], np.ndarray]]] = {
        "(a) GroupQueryAttention, as the builder graph": lambda: case.gqa(_session(gqa_graph(s), threads)),
        "(d) GQA, ORT_GQA_DISABLE_FLASH_ATTENTION=1": lambda: case.gqa(_session(gqa_graph(s), threads, "1")),
        "(a') GQA, rotary off": lambda: case.gqa(_session(gqa_graph(s, rotary=False), threads)),
        "(b) plain fp32 ops, KV heads repeated": lambda: case.plain(_session(plain_graph(s, grouped=False, scatter=False), threads), False),
        "(b') plain fp32 ops, KV heads grouped": lambda: case.plain(_session(plain_graph(s, grouped=True, scatter=False), threads), False),
        "(b'') grouped + TensorScatter into the shared buffer": lambda: case.plain(_session(plain_graph(s, grouped=True, scatter=True), threads), True),
        "(c) MultiHeadAttention, KV heads repeated": lambda: case.fused(_session(fused_graph(s, "MultiHeadAttention", case.past), threads)),
        "(e) ONNX Attention (opset 23), GQA": lambda: case.fused(_session(fused_graph(s, "Attention", case.past), threads)),
        "KV write from numpy (what (b)/(b') leave to the runner)": case.kv_write,
    }  # fmt: skip
    runs: dict[str, Callable[[], np.ndarray]] = {}
    for name, make in makers.items():
        try:
            run = make()
            run()
        except Exception as exc:  # a refused variant is a finding, not a crash
            print(f"attention: {name} does not run here: {str(exc).splitlines()[0][:200]}")
            continue
        runs[name] = run
    return runs


def measure(s: Shape, case: Case, settings: Settings) -> dict[str, dict[str, float]]:
    runs = variants(s, case, settings.threads)
    reference = runs["(a') GQA, rotary off"]() if "(a') GQA, rotary off" in runs else None
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(settings.rounds):
        for name, run in runs.items():
            times[name] += _block(run, settings.block)
    results: dict[str, dict[str, float]] = {}
    for name, run in runs.items():
        row = {"ms": statistics.median(times[name]) * 1000}
        out = run()
        if reference is not None and out.shape == reference.shape and "KV write" not in name:
            row["max_abs_diff"] = float(np.abs(out - reference).max())  # same maths as GQA?
        results[name] = row
    return results


def whole_model(model: Path, settings: Settings) -> dict[str, dict[str, float]]:
    """The model's own graphs (and its prefill graph, if prepared) with GQA's flash path on
    and off, alternating: does the one-layer finding hold for 30 layers and the GEMMs?"""
    manifest = ModelManifest.read(model)
    files = [("decode graph", manifest.model_file)]
    if manifest.prefill_model_file is not None:
        files.append(("prefill graph", manifest.prefill_model_file))
    graphs: dict[str, _Graph] = {}
    for label, file in files:
        for flash, env in (("flash on", None), ("flash off", "1")):
            with _env("ORT_GQA_DISABLE_FLASH_ATTENTION", env):
                graphs[f"{label}, {flash}"] = _Graph(model / file, manifest, settings.threads)
    # Token ids below 100, inside any vocabulary: attention's cost does not depend on them.
    prompt = (np.arange(settings.prompt_tokens, dtype=np.int64) * 7 % 100)[None, :]
    step = np.full((settings.decode_batch, 1), 42, np.int64)
    cases = {f"prompt {settings.prompt_tokens}": (prompt, 0),
             f"decode batch {settings.decode_batch}, past {settings.decode_past}": (step, settings.decode_past)}  # fmt: skip
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(settings.whole_rounds):
        for case, (feed, past) in cases.items():
            for name, graph in graphs.items():
                run = functools.partial(graph.run, feed, past)
                times.setdefault((case, name), []).extend(_block(run, settings.whole_block))
    return {case: {name: statistics.median(times[(case, name)]) * 1000 for name in graphs}
            for case in cases}  # fmt: skip


def _block(run: Callable[[], object], repeats: int) -> list[float]:
    """`repeats` timed runs after an untimed one. Every variant is its own session with its
    own spinning thread pool: the untimed run lets the last session's threads go quiet, so
    no variant is timed against another's spin-waiting on these 2 cores."""
    run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples


def whole_table(results: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(results.values())))
    lines = ["| whole graph, run | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
    for case, row in results.items():
        base = {label: row[f"{label.rsplit(', ', 1)[0]}, flash on"] for label in names}
        cells = [f"{row[n]:.1f} ms ({row[n] / base[n]:.2f}×)" for n in names]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(results: dict[str, dict[str, dict[str, float]]], s: Shape) -> str:
    cases = list(results)
    gqa = "(a) GroupQueryAttention, as the builder graph"
    head = " | ".join(f"{c}: one layer / × {s.layers} layers / vs (a)" for c in cases)
    lines = [f"| variant | {head} |", "|---" * (1 + len(cases)) + "|"]
    for name in dict.fromkeys(n for c in cases for n in results[c]):
        cells = []
        for c in cases:
            row, ref = results[c].get(name), results[c].get(gqa)
            if row is None:
                cells.append("refused")
                continue
            ratio = f"{row['ms'] / ref['ms']:.2f}×" if ref else "—"
            cells.append(f"{row['ms']:.2f} ms / {row['ms'] * s.layers:.0f} ms / {ratio}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(*, quick: bool, results_dir: Path, docs: Path | None, command: str,
         model: Path | None = None) -> dict[str, Any]:  # fmt: skip
    settings = Settings.quick() if quick else Settings()
    model = find_model(model)
    s = read_shape(model, settings.max_context)
    load_before = os.getloadavg()
    results = {
        f"prompt {settings.prompt_tokens}": measure(s, Case(s, 1, settings.prompt_tokens, 0), settings),
        f"decode batch {settings.decode_batch}, past {settings.decode_past}": measure(
            s, Case(s, settings.decode_batch, 1, settings.decode_past), settings),
    }  # fmt: skip
    whole = whole_model(model, settings)
    load_after = os.getloadavg()
    loads = " before, ".join("/".join(f"{x:.1f}" for x in la) for la in (load_before, load_after))
    text = table(results, s) + "\n\n" + whole_table(whole)
    print(text, f"load averages (1/5/15 min): {loads} after", sep="\n")
    machine = report.Machine.current()
    path = report.write_json(results_dir / "prefill-attention.json", {
        "machine": asdict(machine), "settings": asdict(settings), "command": command,
        "model": model.name, "shape": asdict(s), "ort": ort.__version__,
        "load_average": {"before": load_before, "after": load_after}, "layer": results,
        "whole": whole})  # fmt: skip
    print(f"attention: results in {path}")
    if docs is not None:
        header = (f"Measured {machine.date} on {machine.cpu}, {machine.cores} cores (shared), "
                  f"ONNX Runtime {ort.__version__}, {settings.threads} intra-op threads, KV buffer "
                  f"of {s.max_context} positions. Command: `{command}` — {model.name}. Load "
                  f"averages (1/5/15 min): {loads} after.")  # fmt: skip
        report.update_docs(docs, SECTION, header + "\n\n" + text)
    return {"layer": results, "whole": whole}


def cli(argv: list[str] | None = None) -> None:
    run_standalone("prefill.attention", __doc__, main, argv)


if __name__ == "__main__":
    cli()
