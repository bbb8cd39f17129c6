"""The optimum contract's runner: position ids, and a past that grows by concatenation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnxruntime as ort

from tokenwire.backends.onnx._graph_io import LogitsBuffer, RunnerSettings, check_inputs
from tokenwire.backends.onnx.kv_blocks import join_blocks, read_blocks
from tokenwire.backends.onnx.kv_cache import gather_rows, kv_dtype, tensor_names
from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.backends.onnx.session import Placement


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
        settings: RunnerSettings,
    ) -> None:
        check_inputs(session, contract)
        self.session = session
        self.contract = contract
        self.placement = placement
        self.settings = settings
        self.dtype = kv_dtype(contract)
        self.names = tensor_names(contract)
        self.logits = LogitsBuffer(session, settings.logits_rows)
        self.vocab_size = self.logits.vocab_size
        self.lengths = np.zeros(settings.max_batch, dtype=np.int64)
        self._binding = session.io_binding()
        self._pending: dict[int, list[ort.OrtValue]] = {}
        self._members: tuple[int, ...] = ()
        self._past: list[ort.OrtValue] = []
        self._mask = np.zeros((0, 0), dtype=np.int64)
        shape = (1, contract.num_kv_heads, 0, contract.head_size)
        self._empty = [self._ortvalue(np.zeros(shape, dtype=self.dtype)) for _ in self.names]
        self.prefix_reuse = True
        # Speculation is the shared layout's: here a rejected draft's KV would need cutting
        # out of every layer's concatenated cache.
        self.can_verify = False
        self.can_feed = False
        self.batch_slack: int | None = None  # a batch's past is regrouped from single rows

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
        before_run: Callable[[], object] | None = None,
    ) -> list[ort.OrtValue]:
        binding = self._binding
        # Presents change shape every step: outputs bound by device only must be rebound.
        binding.clear_binding_outputs()
        binding.bind_cpu_input("input_ids", input_ids)
        binding.bind_cpu_input("attention_mask", mask)
        if self.contract.position_ids:
            binding.bind_cpu_input("position_ids", positions)
        rows, seq = input_ids.shape
        self.logits.bind(binding, rows, self.settings.logits_positions(seq))
        for (past_name, present_name), value in zip(self.names, past, strict=True):
            binding.bind_ortvalue_input(past_name, value)
            binding.bind_output(present_name, self.placement.ort_device, self.placement.device_id)
        if before_run is not None:
            before_run()
        self.session.run_with_iobinding(binding)
        return list(binding.get_outputs()[1:])

    def restore(self, slot: int, blocks: Sequence[np.ndarray], length: int) -> None:
        self.settings.check_restore(blocks, length)
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
        self.settings.check_feed(start, count)
        past = self._pending.get(slot, self._empty)
        self._pending[slot] = self._run(
            np.ascontiguousarray(token_ids, dtype=np.int64)[None, :],
            np.ones((1, total), dtype=np.int64),
            np.arange(start, total, dtype=np.int64)[None, :],
            past,
        )
        self.lengths[slot] = total
        positions = self.settings.logits_positions(count)
        row: np.ndarray = self.logits.view(1, positions)[0, positions - 1]
        return row

    def prefill_fresh(self, first: int, prompts: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError("the concat KV layout prefills one prompt per run")

    def decode(
        self,
        slots: Sequence[int],
        tokens: Sequence[int],
        before_run: Callable[[], object] | None = None,
    ) -> np.ndarray:
        if tuple(slots) != self._members:
            self._regroup(tuple(slots))
        rows = np.asarray(slots, dtype=np.int64)
        count = len(rows)
        self.settings.check_decode(int(self.lengths[rows].max()))
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

    def verify(
        self, slot: int, token_ids: Sequence[int], before_run: Callable[[], object] | None = None
    ) -> np.ndarray:
        raise NotImplementedError("the concat KV layout does not verify drafts (can_verify)")

    def advance(self, slot: int, tokens: int) -> None:
        raise NotImplementedError("the concat KV layout does not verify drafts (can_verify)")

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
