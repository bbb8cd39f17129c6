"""The bare ONNX Runtime decode loop: the ceiling tokenwire's OnnxBackend is measured against.

Written straight on `onnxruntime` as FACTS.md describes the builder contract, with nothing
of tokenwire: one preallocated KV buffer per layer and per key/value, bound through
IOBinding as both `past_key_values.*` and `present.*` (the graph writes in place), no
position ids, a mask of ones, logits bound to a preallocated host buffer, greedy argmax
over the last position. No detokenization, no scheduling, no HTTP: only the model.

Run as a worker (`python -m benchmarks.onnx_backend._bare_loop --model DIR [--threads N]`), speaking
`benchmarks.onnx_backend._worker_protocol`; a request may add `"batch": B` to decode B copies of the
prompt as one batch (arrivals are then per step, each step yielding B tokens).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from benchmarks.onnx_backend._worker_protocol import Generated, serve


class BareLoop:
    """Greedy decoding of a builder-contract model with a shared, in-place KV buffer."""

    def __init__(self, model_dir: Path, *, threads: int | None) -> None:
        # The manifest `tokenwire prepare` writes (plain JSON) names the graph's contract.
        manifest = json.loads((model_dir / "manifest.json").read_text())
        kv = manifest["kv"]
        if kv["layout"] != "shared" or kv["position_ids"]:
            raise ValueError("the bare loop drives the builder contract (shared KV) only")
        self.layers = int(kv["num_layers"])
        self.kv_heads = int(kv["num_kv_heads"])
        self.head_size = int(kv["head_size"])
        self.context = int(kv["max_context"])
        self.names = [
            (kv[f"past_{kind}"].format(i=i), kv[f"present_{kind}"].format(i=i))
            for i in range(self.layers)
            for kind in ("key", "value")
        ]
        # `logits: last` graphs compute the last position only (tokenwire prepare's pass).
        self.last_only = manifest.get("logits", "all") == "last"
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(model_dir / manifest["model_file"]), options, providers=["CPUExecutionProvider"]
        )
        logits = next(o for o in self.session.get_outputs() if o.name == "logits")
        self.vocab = int(logits.shape[-1])
        # Allocated once per batch size, the model's full context long, by ORT's allocator as
        # tokenwire does: untouched pages cost nothing (numpy would ask for transparent huge
        # pages, so each written row would commit 2 MB per head), and a row's
        # [heads, context, head] block is contiguous.
        self._kv: dict[int, list[ort.OrtValue]] = {}
        self._logits = np.empty(0, dtype=np.float32)

    def _logits_buffer(self, size: int) -> int:
        if self._logits.size < size:
            self._logits = np.empty(size, dtype=np.float32)
        return int(self._logits.ctypes.data)

    def _buffers(self, batch: int) -> list[ort.OrtValue]:
        if batch not in self._kv:
            shape = [batch, self.kv_heads, self.context, self.head_size]
            self._kv[batch] = [
                ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, "cpu", 0)
                for _ in self.names
            ]
        return self._kv[batch]

    def generate(self, prompt: str, max_tokens: int, batch: int = 1) -> Generated:
        ids = self.tokenizer.encode(prompt, add_special_tokens=False).ids
        n = len(ids)
        context = self.context
        kv = self._buffers(batch)
        binding = self.session.io_binding()
        for (past, present), buffer in zip(self.names, kv, strict=True):
            shape, pointer = buffer.shape(), buffer.data_ptr()
            binding.bind_input(past, "cpu", 0, np.float32, shape, pointer)
            binding.bind_output(present, "cpu", 0, np.float32, shape, pointer)
        arrivals: list[float] = []
        generated: list[int] = []

        input_ids = np.tile(np.asarray(ids, dtype=np.int64), (batch, 1))
        total = n
        seq = n
        while True:
            binding.bind_cpu_input("input_ids", input_ids)
            binding.bind_cpu_input("attention_mask", np.ones((batch, total), dtype=np.int64))
            rows = 1 if self.last_only else seq
            pointer = self._logits_buffer(batch * rows * self.vocab)
            binding.bind_output("logits", "cpu", 0, np.float32, [batch, rows, self.vocab], pointer)
            self.session.run_with_iobinding(binding)
            last = self._logits[: batch * rows * self.vocab].reshape(batch, rows, self.vocab)[:, -1]
            tokens = last.argmax(axis=-1)
            arrivals.append(time.perf_counter())
            generated.append(int(tokens[0]))
            if len(generated) >= max_tokens or total + 1 >= context:
                break
            input_ids = tokens.astype(np.int64)[:, None]
            total += 1
            seq = 1
        text = self.tokenizer.decode(generated)
        return Generated(n, arrivals, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    loop = BareLoop(args.model, threads=args.threads)
    serve(loop.generate)


if __name__ == "__main__":
    main()
