"""The KV cache: preallocated per-slot buffers (shared layout) and batch gathering (concat).

Shared layout (onnxruntime-genai builder, GroupQueryAttention): one buffer per layer and per
key/value of shape `[max_batch, kv_heads, max_context, head_size]`. A slot is one batch row.
The same memory is bound as `past_key_values.*` input and `present.*` output, so the graph
writes each step's keys and values in place: nothing is copied, on the host or the device.
Rows are bound by pointer, which lets a step see any contiguous run of slots.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from tokenwire.backends.onnx.manifest import KVContract

_DTYPES: dict[str, type[np.generic]] = {
    "float32": np.float32,
    "float16": np.float16,
    "bfloat16": np.uint16,  # same width; ORT reads the element type from the graph
}


def kv_dtype(contract: KVContract) -> type[np.generic]:
    try:
        return _DTYPES[contract.dtype]
    except KeyError:
        raise ValueError(
            f"KV dtype {contract.dtype!r} is not supported; expected one of {', '.join(_DTYPES)}"
        ) from None


def _host_memory(pointer: int, size: int) -> memoryview:
    """The `size` bytes at `pointer`, unowned: the OrtValue that holds them must outlive it."""
    return memoryview((ctypes.c_byte * size).from_address(pointer)).cast("B")


def token_bytes(contract: KVContract) -> int:
    """KV bytes of one token: every layer's key and value."""
    itemsize = np.dtype(kv_dtype(contract)).itemsize
    return 2 * contract.num_layers * contract.num_kv_heads * contract.head_size * itemsize


def tensor_names(contract: KVContract) -> list[tuple[str, str]]:
    """(past input, present output) names for every layer, keys before values."""
    names = []
    for i in range(contract.num_layers):
        names.append((contract.past_key.format(i=i), contract.present_key.format(i=i)))
        names.append((contract.past_value.format(i=i), contract.present_value.format(i=i)))
    return names


class SharedKVCache:
    """Per-slot KV buffers, allocated once on `device`, bound in place for a run of rows."""

    def __init__(
        self,
        contract: KVContract,
        *,
        max_batch: int,
        max_context: int,
        device: str = "cpu",
        device_id: int = 0,
    ) -> None:
        self.contract = contract
        self.max_batch = max_batch
        self.max_context = max_context
        self.device = device
        self.device_id = device_id
        self.dtype = kv_dtype(contract)
        self.names = tensor_names(contract)
        self.row_shape = (contract.num_kv_heads, max_context, contract.head_size)
        self.row_bytes = int(np.prod(self.row_shape)) * np.dtype(self.dtype).itemsize
        # Uninitialised memory: a row is only ever read up to the length written into it, and
        # untouched host pages cost no RSS, so a long max_context is cheap until used.
        self.buffers = [
            ort.OrtValue.ortvalue_from_shape_and_type(
                [max_batch, *self.row_shape], self.dtype, device, device_id
            )
            for _ in self.names
        ]
        self._pointers = [buffer.data_ptr() for buffer in self.buffers]
        # On the host, numpy views of the same memory let the prefix cache copy a slot's
        # rows in and out without a round trip through ORT. (On a GPU there are none.)
        self.host_views: list[np.ndarray] | None = None
        if device == "cpu":
            shape = (max_batch, *self.row_shape)
            size = self.row_bytes * max_batch
            self.host_views = [
                np.frombuffer(_host_memory(pointer, size), dtype=self.dtype).reshape(shape)
                for pointer in self._pointers
            ]

    def bind(self, binding: ort.IOBinding, start: int, count: int) -> None:
        """Bind rows `[start, start + count)` of every buffer as both past and present."""
        if start < 0 or count < 1 or start + count > self.max_batch:
            raise ValueError(f"rows [{start}, {start + count}) are outside 0..{self.max_batch}")
        shape = [count, *self.row_shape]
        offset = start * self.row_bytes
        for (past, present), pointer in zip(self.names, self._pointers, strict=True):
            binding.bind_input(
                past, self.device, self.device_id, self.dtype, shape, pointer + offset
            )
            binding.bind_output(
                present, self.device, self.device_id, self.dtype, shape, pointer + offset
            )

    def nbytes(self) -> int:
        return self.row_bytes * self.max_batch * len(self.buffers)


def gather_rows(
    rows: Sequence[Sequence[np.ndarray]], dtype: type[np.generic]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Stack per-sequence KV (each `[kv_heads, length, head]`, one per tensor) right-padded.

    Returns the batch tensors `[n, kv_heads, width, head]` and the `[n, width]` int64 mask
    whose row r is 1 on row r's `length` leading positions.
    """
    lengths = [row[0].shape[1] for row in rows]
    width = max(lengths)
    tensors = []
    for t in range(len(rows[0])):
        heads, _, head = rows[0][t].shape
        batch = np.zeros((len(rows), heads, width, head), dtype=dtype)
        for r, row in enumerate(rows):
            batch[r, :, : lengths[r], :] = row[t]
        tensors.append(batch)
    mask = (np.arange(width)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
    return tensors, mask
