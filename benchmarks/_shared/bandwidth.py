"""The memory-bandwidth bound of batch-1 decoding: read bandwidth and weight bytes per token.

A batch-1 decode step reads every weight once (the embedding table excepted: one row), so
tokens/s can be no more than read bandwidth over the bytes read per token.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

_ITEM_BYTES = {
    onnx.TensorProto.FLOAT: 4,
    onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.BFLOAT16: 2,
    onnx.TensorProto.INT8: 1,
    onnx.TensorProto.UINT8: 1,
    onnx.TensorProto.INT4: 0.5,
    onnx.TensorProto.UINT4: 0.5,
    onnx.TensorProto.INT32: 4,
    onnx.TensorProto.INT64: 8,
}


def read_bandwidth(threads: int = 2, megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes/s read by `threads` threads, each reducing its own share of a large array.

    `ndarray.max` streams through memory with SIMD and releases the GIL, so the threads
    read in parallel; the best of `repeats` passes is taken (noise only slows it down).
    """
    count = megabytes * 2**20 // 8
    parts = [np.ones(count // threads, dtype=np.float64) for _ in range(threads)]
    best = 0.0
    for _ in range(repeats):
        barrier = threading.Barrier(threads + 1)

        def read(part: np.ndarray, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            part.max()

        workers = [threading.Thread(target=read, args=(p,)) for p in parts]
        for worker in workers:
            worker.start()
        barrier.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
        best = max(best, sum(p.nbytes for p in parts) / (time.perf_counter() - started))
    return best


@dataclass(frozen=True, slots=True)
class WeightBytes:
    """A model's weight bytes on disk, and those a batch-1 decode step reads."""

    file_bytes: int
    initializer_bytes: int
    per_token_bytes: int


def weight_bytes(model_file: Path) -> WeightBytes:
    """Sizes from the graph's initializers (external data is not loaded).

    A table only ever read through `Gather` (the token embedding) costs one row per token;
    everything else is read whole.
    """
    model = onnx.load(str(model_file), load_external_data=False)
    graph = model.graph
    gathered: set[str] = set()
    used_otherwise: set[str] = set()
    for node in graph.node:
        for position, name in enumerate(node.input):
            if node.op_type.startswith("Gather") and position == 0:
                gathered.add(name)
            else:
                used_otherwise.add(name)
    total = per_token = 0.0
    for tensor in graph.initializer:
        elements = int(np.prod(tensor.dims)) if tensor.dims else 1
        size = elements * _ITEM_BYTES.get(tensor.data_type, 4)
        total += size
        if tensor.name in gathered and tensor.name not in used_otherwise and tensor.dims:
            per_token += size / tensor.dims[0]
        else:
            per_token += size
    files = [model_file, *model_file.parent.glob(model_file.name + ".data")]
    return WeightBytes(sum(f.stat().st_size for f in files), int(total), int(per_token))
