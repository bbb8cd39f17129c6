"""What both runners share besides the KV cache: their settings, the logits buffer, and the
check that a graph has the inputs and outputs its manifest's KV contract names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from tokenwire.backends.onnx.kv_cache import tensor_names
from tokenwire.backends.onnx.manifest import KVContract

_ELEMENT_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """How a runner is sized and what it feeds: the backend's limits and the manifest's ids."""

    max_batch: int
    max_context: int
    max_run_tokens: int
    """The most tokens one prefill run feeds (the backend's prefill chunk)."""
    pad_token_id: int
    last_logits: bool = False
    """The graph's `logits` hold the last positions only (the manifest's `logits: last`):
    the last one, or the last `verify_tokens` once its slice is widened (`LAST_POSITIONS`)."""
    verify_tokens: int = 1
    """The most tokens one row feeds in a run that verifies drafts (1: no speculation)."""
    prefill_min_tokens: int = 16
    """A prefill run of at least this many tokens (rows × width) goes to the prefill graph,
    when there is one; smaller ones run on the decode graph (docs/onnx-backend.md)."""
    decode_graph_min_rows: int = 0
    """A decode step of at least this many rows, or a verify run of at least this many
    positions, runs on the prefill graph too, where that graph batches rows (the int8 GEMM
    graph); 0: both stay on the decode graph."""

    @property
    def logits_rows(self) -> int:
        """Rows of logits one run may return: a batch's last positions, a chunk's or a
        draft's."""
        return max(self.logits_positions(self.max_run_tokens), self.max_batch, self.verify_tokens)

    def logits_positions(self, tokens: int) -> int:
        """Positions with logits when a run feeds `tokens` per row."""
        return min(tokens, self.verify_tokens) if self.last_logits else tokens

    def check_restore(self, blocks: Sequence[np.ndarray], length: int) -> None:
        """Refuse to restore `length` tokens that `blocks` do not hold or a slot cannot."""
        if not blocks or length > len(blocks) * blocks[0].shape[2] or length > self.max_context:
            raise ValueError(f"cannot restore {length} tokens from {len(blocks)} blocks")

    def check_feed(self, start: int, count: int) -> None:
        """Refuse a prefill of `count` tokens into a slot holding `start`, past the context."""
        if count == 0 or start + count > self.max_context:
            raise ValueError(
                f"cannot feed {count} tokens to a slot holding {start} of {self.max_context}"
            )

    def check_decode(self, longest: int) -> None:
        """Refuse a decode step when a row already holds `longest` = the whole context."""
        if longest >= self.max_context:
            raise ValueError(f"a slot is full ({self.max_context} tokens)")


# The constant `tokenwire prepare` (`prepare.last_logits`) slices the hidden states from
# (-1: the last position). Replaced by -k at load, a run's last k positions get logits.
LAST_POSITIONS = "/tokenwire/last_position/starts"


def last_positions(count: int) -> dict[str, np.ndarray]:
    """The initializer that makes a last-position graph return its last `count` positions."""
    return {LAST_POSITIONS: np.array([-count], dtype=np.int64)}


class LogitsBuffer:
    """A host buffer the `logits` output is bound to by pointer: no per-step allocation.

    Bound to host memory on every device: the loop samples on the host, and only the
    rows it needs are read. A graph that declares a fixed number of positions (a
    last-position graph: 1) refuses a buffer of another shape: runs with more positions (a
    widened slice, see `LAST_POSITIONS`) let ORT allocate the output instead.
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
        positions = meta.shape[1] if len(meta.shape) == 3 else None
        self.declared_positions = positions if isinstance(positions, int) else None
        self._buffer = np.empty(capacity * vocab, dtype=self.dtype)
        self._pointer = self._buffer.ctypes.data
        self._allocated: ort.IOBinding | None = None

    def allocates(self, seq: int) -> bool:
        """Whether a run of `seq` positions gets an ORT-allocated output (see the class)."""
        return self.declared_positions is not None and seq != self.declared_positions

    def bind(self, binding: ort.IOBinding, rows: int, seq: int) -> None:
        """Bind the output; when `allocates(seq)`, after clearing the binding's outputs (the
        logits must come first in `get_outputs`): the caller binds its others again."""
        if self.allocates(seq):
            binding.clear_binding_outputs()
            binding.bind_output(self.name, "cpu")
            self._allocated = binding
            return
        self._allocated = None
        if rows * seq > self.capacity:
            raise ValueError(f"{rows * seq} positions exceed the logits buffer ({self.capacity})")
        binding.bind_output(
            self.name, "cpu", 0, self.dtype, [rows, seq, self.vocab_size], self._pointer
        )

    def view(self, rows: int, seq: int) -> np.ndarray:
        if self._allocated is not None:
            logits: np.ndarray = self._allocated.get_outputs()[0].numpy()
            return logits.reshape(rows, seq, self.vocab_size)
        return self._buffer[: rows * seq * self.vocab_size].reshape(rows, seq, self.vocab_size)


def check_inputs(session: ort.InferenceSession, contract: KVContract) -> None:
    """Raise ValueError naming what the graph lacks of `contract`'s inputs and outputs."""
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
