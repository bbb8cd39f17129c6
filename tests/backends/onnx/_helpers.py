"""Running the backend on a tiny model and collecting what it streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import openvino
import pytest

from tokenwire.backends.onnx import OnnxBackend
from tokenwire.backends.onnx.manifest import ModelManifest
from tokenwire.backends.onnx.openvino_prompts import has_bf16
from tokenwire.events import Event, Finish, Progress, TokenDelta
from tokenwire.requests import GenerationRequest

CPU_HAS_BF16 = has_bf16(openvino.Core())
# Serving with prefill_graph=bf16 needs bf16 arithmetic; on other CPUs (AVX2 only) the
# OpenVINO prompt graph's own tests run it in f32 instead (tests/backends/onnx/test_bf16_prefill.py).
needs_bf16 = pytest.mark.skipif(
    not CPU_HAS_BF16, reason="this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX)"
)


@dataclass(frozen=True, slots=True)
class Result:
    deltas: tuple[TokenDelta, ...]
    finish: Finish
    events: tuple[Event, ...]

    @property
    def text(self) -> str:
        return "".join(d.text for d in self.deltas)

    @property
    def ids(self) -> list[int]:
        return [i for d in self.deltas for i in d.token_ids]


def request(prompt: str, max_tokens: int | None = 24, **fields: Any) -> GenerationRequest:
    fields.setdefault("temperature", 0.0)
    return GenerationRequest(model="tiny", prompt=prompt, max_tokens=max_tokens, **fields)


@asynccontextmanager
async def running(model_dir: Path, **options: Any) -> AsyncIterator[OnnxBackend]:
    backend = OnnxBackend(model_dir, **options)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


async def collect(backend: OnnxBackend, req: GenerationRequest) -> Result:
    events = [event async for event in backend.generate(req)]
    finishes = [e for e in events if isinstance(e, Finish)]
    assert len(finishes) == 1 and events[-1] is finishes[0], events
    deltas = tuple(e for e in events if isinstance(e, TokenDelta))
    assert all(isinstance(e, (TokenDelta, Finish, Progress)) for e in events)
    return Result(deltas, finishes[0], tuple(events))


async def all_slots_free(backend: OnnxBackend) -> bool:
    """Whether every slot is free within a few seconds: a finished stream's slot is freed at
    the loop's next boundary, which may come just after its consumer saw the `Finish`."""
    for _ in range(1000):
        if backend.stats.free_slots == backend.max_batch:
            return True
        await anyio.sleep(0.005)
    return False


def graph_feeds(manifest: ModelManifest, ids: list[int], past: list[np.ndarray] | None) -> dict:
    """A one-row run's inputs for a builder-contract graph: `ids` after `past` (None: none)."""
    kv, start = manifest.kv, 0 if past is None else past[0].shape[2]
    empty = np.zeros((1, kv.num_kv_heads, 0, kv.head_size), np.float32)
    feeds = {
        "input_ids": np.array([ids], np.int64),
        "attention_mask": np.ones((1, start + len(ids)), np.int64),
    }
    for i in range(kv.num_layers):
        for j, kind in enumerate(("key", "value")):
            feeds[f"past_key_values.{i}.{kind}"] = empty if past is None else past[2 * i + j]
    return feeds
