"""One forward step of the decoder through IOBinding, for either KV contract.

A runner owns the KV cache and each slot's length; the decode loop tells it which slots
feed which tokens. Its methods block (they run the graph) and are called from one worker
thread at a time. The logits they return are views of a buffer the next call overwrites.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import onnxruntime as ort

from tokenwire.backends.onnx.kv_blocks import join_blocks, read_blocks, write_blocks
from tokenwire.backends.onnx.kv_cache import SharedKVCache, gather_rows, kv_dtype, tensor_names
from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.backends.onnx.session import Placement

_ELEMENT_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


def _nothing() -> None:
    pass


class ModelRunner(Protocol):
    """Runs the graph for one slot's prompt chunk or one token per running slot."""

    vocab_size: int
    prefix_reuse: bool
    """Whether `restore` and `snapshot` work here; the prefix cache is ignored otherwise."""

    def length(self, slot: int) -> int:
        """Tokens held in `slot`'s KV cache."""
        ...

    def restore(self, slot: int, blocks: Sequence[np.ndarray], length: int) -> None:
        """Make the empty `slot` hold the first `length` tokens whose KV is `blocks` (copied)."""
        ...

    def snapshot(self, slot: int, start: int, count: int, block_tokens: int) -> list[np.ndarray]:
        """Copies of `count` blocks of `slot`'s KV from position `start` (see `kv_blocks`)."""
        ...

    def prefill(self, slot: int, token_ids: np.ndarray) -> np.ndarray:
        """Feed `token_ids` after what `slot` holds; the last position's logits `[vocab]`."""
        ...

    def decode(
        self,
        slots: Sequence[int],
        tokens: Sequence[int],
        before_run: Callable[[], object] = _nothing,
    ) -> np.ndarray:
        """Feed one token to each slot in one run; logits `[len(slots), vocab]`.

        `before_run` is called just before the graph runs, when nothing but the run is left.
        """
        ...

    def release(self, slot: int) -> None:
        """Forget `slot`'s cache; it may be prefilled afresh."""
        ...


class LogitsBuffer:
    """A host buffer the `logits` output is bound to by pointer: no per-step allocation.

    Bound to host memory on every device: the loop samples on the host, and only the
    rows it needs are read.
    """

    def __init__(self, session: ort.InferenceSession, capacity: int, name: str = "logits") -> None:
        meta = next((o for o in session.get_outputs() if o.name == name), None)
        if meta is None:
            raise ValueError(f"the model has no {name!r} output")
        vocab = meta.shape[-1]
        if not isinstance(vocab, int):
            raise ValueError(f"the model's {name!r} output has no fixed vocabulary size")
        self.name = name
        self.vocab_size = vocab
        self.dtype = _ELEMENT_TYPES.get(meta.type, np.float32)
        self.capacity = capacity
        self._buffer = np.empty(capacity * vocab, dtype=self.dtype)
        self._pointer = self._buffer.ctypes.data

    def bind(self, binding: ort.IOBinding, rows: int, seq: int) -> None:
        if rows * seq > self.capacity:
            raise ValueError(f"{rows * seq} positions exceed the logits buffer ({self.capacity})")
        binding.bind_output(
            self.name, "cpu", 0, self.dtype, [rows, seq, self.vocab_size], self._pointer
        )

    def view(self, rows: int, seq: int) -> np.ndarray:
        return self._buffer[: rows * seq * self.vocab_size].reshape(rows, seq, self.vocab_size)


def _check_inputs(session: ort.InferenceSession, contract: KVContract) -> None:
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    wanted = {"input_ids", "attention_mask"} | {p for p, _ in tensor_names(contract)}
    if contract.position_ids:
        wanted.add("position_ids")
    missing = sorted(wanted - inputs) + sorted({p for _, p in tensor_names(contract)} - outputs)
    if missing:
        raise ValueError(
            f"the model does not match its manifest's KV contract: missing {', '.join(missing)}"
        )


class SharedKVRunner:
    """The builder contract: right-padded masks, no position ids, KV written in place.

    A decode step runs the contiguous slots `[min, max]` of the running set. Slots inside
    that range that are not decoding (free, or mid-prefill) ride along as dummy rows fed a
    pad token at their current length: GroupQueryAttention writes their garbage key/value
    at that position, which is past anything they hold and is overwritten before it is read.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        contract: KVContract,
        placement: Placement,
        *,
        max_batch: int,
        max_context: int,
        max_run_tokens: int,
        pad_token_id: int,
        last_logits: bool = False,
    ) -> None:
        _check_inputs(session, contract)
        self.session = session
        self.contract = contract
        self.max_context = max_context
        self.pad_token_id = pad_token_id
        self.last_logits = last_logits
        self.cache = SharedKVCache(
            contract,
            max_batch=max_batch,
            max_context=max_context,
            device=placement.ort_device,
            device_id=placement.device_id,
        )
        self.logits = LogitsBuffer(session, max(1 if last_logits else max_run_tokens, max_batch))
        self.vocab_size = self.logits.vocab_size
        self.lengths = np.zeros(max_batch, dtype=np.int64)
        # Two bindings, so a decode step's KV binding survives interleaved prefill chunks.
        self._decode = session.io_binding()
        self._prefill = session.io_binding()
        self._decode_rows: tuple[int, int] | None = None
        self._positions = np.arange(max_context, dtype=np.int64)
        self.prefix_reuse = self.cache.host_views is not None

    def length(self, slot: int) -> int:
        return int(self.lengths[slot])

    def _rows(self, slot: int) -> list[np.ndarray]:
        views = self.cache.host_views
        if views is None:
            raise RuntimeError("prefix reuse needs the KV cache in host memory")
        return [view[slot] for view in views]

    def restore(self, slot: int, blocks: Sequence[np.ndarray], length: int) -> None:
        if not blocks or length > len(blocks) * blocks[0].shape[2] or length > self.max_context:
            raise ValueError(f"cannot restore {length} tokens from {len(blocks)} blocks")
        write_blocks(self._rows(slot), blocks)
        self.lengths[slot] = length

    def snapshot(self, slot: int, start: int, count: int, block_tokens: int) -> list[np.ndarray]:
        if start + count * block_tokens > self.lengths[slot]:
            raise ValueError(f"slot {slot} holds {self.lengths[slot]} tokens, fewer than asked")
        return read_blocks(self._rows(slot), start, count, block_tokens)

    def prefill(self, slot: int, token_ids: np.ndarray) -> np.ndarray:
        start, count = int(self.lengths[slot]), len(token_ids)
        total = start + count
        if count == 0 or total > self.max_context:
            raise ValueError(
                f"cannot feed {count} tokens to a slot holding {start} of {self.max_context}"
            )
        binding = self._prefill
        binding.bind_cpu_input(
            "input_ids", np.ascontiguousarray(token_ids, dtype=np.int64)[None, :]
        )
        binding.bind_cpu_input("attention_mask", np.ones((1, total), dtype=np.int64))
        if self.contract.position_ids:
            binding.bind_cpu_input("position_ids", self._positions[None, start:total].copy())
        positions = 1 if self.last_logits else count
        self.logits.bind(binding, 1, positions)
        self.cache.bind(binding, slot, 1)
        self.session.run_with_iobinding(binding)
        self.lengths[slot] = total
        row: np.ndarray = self.logits.view(1, positions)[0, positions - 1]
        return row

    def decode(
        self,
        slots: Sequence[int],
        tokens: Sequence[int],
        before_run: Callable[[], object] = _nothing,
    ) -> np.ndarray:
        rows = np.asarray(slots, dtype=np.int64)
        low, high = int(rows.min()), int(rows.max()) + 1
        count = high - low
        index = rows - low
        input_ids = np.full((count, 1), self.pad_token_id, dtype=np.int64)
        input_ids[index, 0] = tokens
        lengths = self.lengths[low:high]
        width = int(lengths.max()) + 1
        if width > self.max_context:
            raise ValueError(f"a slot is full ({self.max_context} tokens)")
        binding = self._decode
        binding.bind_cpu_input("input_ids", input_ids)
        binding.bind_cpu_input(
            "attention_mask", (self._positions[None, :width] <= lengths[:, None]).astype(np.int64)
        )
        if self.contract.position_ids:
            binding.bind_cpu_input("position_ids", lengths[:, None].copy())
        self.logits.bind(binding, count, 1)
        if self._decode_rows != (low, count):
            self.cache.bind(binding, low, count)
            self._decode_rows = (low, count)
        before_run()
        self.session.run_with_iobinding(binding)
        self.lengths[rows] += 1
        logits = self.logits.view(count, 1)[:, 0]
        return (
            logits if count == len(rows) and index[0] == 0 and _ascending(index) else logits[index]
        )

    def release(self, slot: int) -> None:
        self.lengths[slot] = 0


def _ascending(index: np.ndarray) -> bool:
    return bool(np.all(index[1:] > index[:-1]))


class ConcatKVRunner:
    """The optimum contract: position ids, and `present = Concat(past, new)` every step.

    The batch's past is the previous step's present, kept as OrtValues. When the set of
    running slots changes, each row's valid positions are gathered into a new right-padded
    batch (the only time KV passes through host memory); between changes a row's padding
    stays in place, masked out, while position ids carry each row's true length.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        contract: KVContract,
        placement: Placement,
        *,
        max_batch: int,
        max_context: int,
        max_run_tokens: int,
        pad_token_id: int,
        last_logits: bool = False,
    ) -> None:
        _check_inputs(session, contract)
        self.session = session
        self.contract = contract
        self.placement = placement
        self.last_logits = last_logits
        self.max_context = max_context
        self.pad_token_id = pad_token_id
        self.dtype = kv_dtype(contract)
        self.names = tensor_names(contract)
        self.logits = LogitsBuffer(session, max(1 if last_logits else max_run_tokens, max_batch))
        self.vocab_size = self.logits.vocab_size
        self.lengths = np.zeros(max_batch, dtype=np.int64)
        self._binding = session.io_binding()
        self._pending: dict[int, list[ort.OrtValue]] = {}
        self._members: tuple[int, ...] = ()
        self._past: list[ort.OrtValue] = []
        self._mask = np.zeros((0, 0), dtype=np.int64)
        shape = (1, contract.num_kv_heads, 0, contract.head_size)
        self._empty = [self._ortvalue(np.zeros(shape, dtype=self.dtype)) for _ in self.names]
        self.prefix_reuse = True

    def _ortvalue(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(
            array, self.placement.ort_device, self.placement.device_id
        )

    def length(self, slot: int) -> int:
        return int(self.lengths[slot])

    def _run(
        self,
        input_ids: np.ndarray,
        mask: np.ndarray,
        positions: np.ndarray,
        past: list[ort.OrtValue],
        before_run: Callable[[], object] = _nothing,
    ) -> list[ort.OrtValue]:
        binding = self._binding
        # Presents change shape every step: outputs bound by device only must be rebound.
        binding.clear_binding_outputs()
        binding.bind_cpu_input("input_ids", input_ids)
        binding.bind_cpu_input("attention_mask", mask)
        if self.contract.position_ids:
            binding.bind_cpu_input("position_ids", positions)
        rows, seq = input_ids.shape
        self.logits.bind(binding, rows, 1 if self.last_logits else seq)
        for (past_name, present_name), value in zip(self.names, past, strict=True):
            binding.bind_ortvalue_input(past_name, value)
            binding.bind_output(present_name, self.placement.ort_device, self.placement.device_id)
        before_run()
        self.session.run_with_iobinding(binding)
        return list(binding.get_outputs()[1:])

    def restore(self, slot: int, blocks: Sequence[np.ndarray], length: int) -> None:
        if not blocks or length > len(blocks) * blocks[0].shape[2] or length > self.max_context:
            raise ValueError(f"cannot restore {length} tokens from {len(blocks)} blocks")
        # A prefilling slot's past is its own OrtValues, joined from copies of the blocks.
        self._pending[slot] = [self._ortvalue(tensor) for tensor in join_blocks(blocks, length)]
        self.lengths[slot] = length

    def snapshot(self, slot: int, start: int, count: int, block_tokens: int) -> list[np.ndarray]:
        # Only a slot whose prompt just finished (before it joins the batch) is asked for.
        pending = self._pending.get(slot)
        if pending is None or start + count * block_tokens > self.lengths[slot]:
            raise ValueError(f"slot {slot} holds no prefilled prompt of that length")
        return read_blocks([value.numpy()[0] for value in pending], start, count, block_tokens)

    def prefill(self, slot: int, token_ids: np.ndarray) -> np.ndarray:
        start, count = int(self.lengths[slot]), len(token_ids)
        total = start + count
        if count == 0 or total > self.max_context:
            raise ValueError(
                f"cannot feed {count} tokens to a slot holding {start} of {self.max_context}"
            )
        past = self._pending.get(slot, self._empty)
        self._pending[slot] = self._run(
            np.ascontiguousarray(token_ids, dtype=np.int64)[None, :],
            np.ones((1, total), dtype=np.int64),
            np.arange(start, total, dtype=np.int64)[None, :],
            past,
        )
        self.lengths[slot] = total
        positions = 1 if self.last_logits else count
        row: np.ndarray = self.logits.view(1, positions)[0, positions - 1]
        return row

    def decode(
        self,
        slots: Sequence[int],
        tokens: Sequence[int],
        before_run: Callable[[], object] = _nothing,
    ) -> np.ndarray:
        if tuple(slots) != self._members:
            self._regroup(tuple(slots))
        rows = np.asarray(slots, dtype=np.int64)
        count = len(rows)
        if int(self.lengths[rows].max()) >= self.max_context:
            raise ValueError(f"a slot is full ({self.max_context} tokens)")
        mask = np.concatenate([self._mask, np.ones((count, 1), dtype=np.int64)], axis=1)
        self._past = self._run(
            np.asarray(tokens, dtype=np.int64)[:, None],
            mask,
            self.lengths[rows][:, None],
            self._past,
            before_run,
        )
        self._mask = mask
        self.lengths[rows] += 1
        return self.logits.view(count, 1)[:, 0]

    def _regroup(self, slots: tuple[int, ...]) -> None:
        """Rebuild the batch's past from the rows that stay and the slots that join."""
        batch: list[np.ndarray] | None = None
        rows: list[list[np.ndarray]] = []
        for slot in slots:
            if slot in self._members:
                r = self._members.index(slot)
                if batch is None:
                    batch = [value.numpy() for value in self._past]
                valid = self._mask[r].astype(bool)
                rows.append([tensor[r][:, valid, :] for tensor in batch])
            else:
                rows.append([value.numpy()[0] for value in self._pending.pop(slot)])
        tensors, self._mask = gather_rows(rows, self.dtype)
        self._past = [self._ortvalue(tensor) for tensor in tensors]
        self._members = slots

    def release(self, slot: int) -> None:
        self.lengths[slot] = 0
        self._pending.pop(slot, None)
        if slot in self._members:
            # -1 marks the row dead, so a new sequence prefilled into this slot is never
            # mistaken for the row that left.
            self._members = tuple(-1 if s == slot else s for s in self._members)
            if all(s == -1 for s in self._members):
                self._members, self._past = (), []
                self._mask = np.zeros((0, 0), dtype=np.int64)


def create_runner(
    session: ort.InferenceSession,
    contract: KVContract,
    placement: Placement,
    *,
    max_batch: int,
    max_context: int,
    max_run_tokens: int,
    pad_token_id: int,
    last_logits: bool = False,
) -> ModelRunner:
    """The runner for the manifest's KV layout; `last_logits` when the graph's `logits` hold
    the last position only (the manifest's `logits: last`)."""
    cls = SharedKVRunner if contract.layout == "shared" else ConcatKVRunner
    return cls(
        session,
        contract,
        placement,
        max_batch=max_batch,
        max_context=max_context,
        max_run_tokens=max_run_tokens,
        pad_token_id=pad_token_id,
        last_logits=last_logits,
    )
