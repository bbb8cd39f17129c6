"""The builder contract's runner: one KV buffer per layer, written in place through IOBinding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from tokenwire.backends.onnx._graph_io import LogitsBuffer, RunnerSettings, check_inputs
from tokenwire.backends.onnx.kv_blocks import read_blocks, write_blocks
from tokenwire.backends.onnx.kv_cache import SharedKVCache
from tokenwire.backends.onnx.manifest import KVContract
from tokenwire.backends.onnx.prompt_graphs import OrtPromptGraph, PromptGraph, PromptGraphFactory
from tokenwire.backends.onnx.session import Placement


class SharedKVRunner:
    """The builder contract: right-padded masks, no position ids, KV written in place.

    A decode step runs the contiguous slots `[min, max]` of the running set. Slots inside
    that range that are not decoding (free, or mid-prefill) ride along as dummy rows fed a
    pad token at their current length: GroupQueryAttention writes their garbage key/value
    at that position, which is past anything they hold and is overwritten before it is read.

    With a `prefill` graph (a second graph of the same KV contract, `prompt_graphs`), prompt
    runs of at least `settings.prefill_min_tokens` tokens go there and write the same KV
    buffer; small chunks stay on `session`, and so do decode steps and verify runs, unless
    they feed `settings.decode_graph_min_rows` tokens or more (a step's rows, a verify run's
    positions) and the prefill graph batches rows.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        contract: KVContract,
        placement: Placement,
        settings: RunnerSettings,
        prefill: PromptGraphFactory | None = None,
    ) -> None:
        check_inputs(session, contract)
        self.session = session
        self.contract = contract
        self.settings = settings
        self.cache = SharedKVCache(
            contract,
            max_batch=settings.max_batch,
            max_context=settings.max_context,
            device=placement.ort_device,
            device_id=placement.device_id,
        )
        self.logits = LogitsBuffer(session, settings.logits_rows)
        self.vocab_size = self.logits.vocab_size
        self.lengths = np.zeros(settings.max_batch, dtype=np.int64)
        # Bindings of their own, so a decode step's KV binding survives interleaved prefill
        # chunks.
        self._step = _StepBinding(session.io_binding())
        self._prompts = OrtPromptGraph(session, self.cache, self.logits)
        self._bulk = None if prefill is None else prefill(self.cache, self.logits)
        if self._bulk is not None and self._bulk.vocab_size != self.vocab_size:
            raise ValueError(
                f"the prefill graph's vocabulary ({self._bulk.vocab_size}) is not the "
                f"model's ({self.vocab_size})"
            )
        self._batch_step: _StepBinding | None = None
        # Where verify runs of `decode_graph_min_rows` tokens or more go.
        self._bulk_verify: OrtPromptGraph | None = None
        if settings.decode_graph_min_rows > 0:
            if not isinstance(self._bulk, OrtPromptGraph):
                raise ValueError(
                    "decode steps run on a prefill graph only when it is an ONNX Runtime "
                    "graph that batches rows (prefill_graph=int8)"
                )
            bulk = self._bulk.session
            self._batch_step = _StepBinding(bulk.io_binding(), session=bulk)
            self._bulk_verify = self._bulk
        self._positions = np.arange(settings.max_context, dtype=np.int64)
        self.prefix_reuse = self.cache.host_views is not None
        self.can_verify = settings.verify_tokens > 1
        self.can_feed = True
        # A fresh batch's rows get logits at their own last position only when it lies in
        # the positions the graph projects: the last `logits_positions` of the widest row.
        self.batch_slack: int | None = (
            settings.verify_tokens - 1 if settings.last_logits else settings.max_run_tokens
        )

    def length(self, slot: int) -> int:
        return int(self.lengths[slot])

    def _rows(self, slot: int) -> list[np.ndarray]:
        views = self.cache.host_views
        if views is None:
            raise RuntimeError("prefix reuse needs the KV cache in host memory")
        return [view[slot] for view in views]

    def restore(self, slot: int, blocks: Sequence[np.ndarray], length: int) -> None:
        self.settings.check_restore(blocks, length)
        write_blocks(self._rows(slot), blocks)
        self.lengths[slot] = length

    def snapshot(self, slot: int, start: int, count: int, block_tokens: int) -> list[np.ndarray]:
        if start + count * block_tokens > self.lengths[slot]:
            raise ValueError(f"slot {slot} holds {self.lengths[slot]} tokens, fewer than asked")
        return read_blocks(self._rows(slot), start, count, block_tokens)

    def prefill(self, slot: int, token_ids: np.ndarray) -> np.ndarray:
        start, count = int(self.lengths[slot]), len(token_ids)
        total = start + count
        self.settings.check_feed(start, count)
        feeds = {
            "input_ids": np.ascontiguousarray(token_ids, dtype=np.int64)[None, :],
            "attention_mask": np.ones((1, total), dtype=np.int64),
        }
        if self.contract.position_ids:
            feeds["position_ids"] = self._positions[None, start:total].copy()
        positions = self.settings.logits_positions(count)
        logits = self._graph(1, count).run(feeds, slot, 1, start, positions)
        self.lengths[slot] = total
        row: np.ndarray = logits[0, positions - 1]
        return row

    def prefill_fresh(self, first: int, prompts: Sequence[np.ndarray]) -> np.ndarray:
        """Prefill empty slots `first, first + 1, …` with `prompts` in one run (right-padded
        rows, a mask per row); each row's last-position logits `[len(prompts), vocab]`.

        Only fresh prompts share a run: GroupQueryAttention on CPU refuses several rows that
        each feed several tokens after a past (see `verify`). Rows must differ in length by
        at most `batch_slack`, so each one's last position has logits.
        """
        count = len(prompts)
        sizes = np.array([len(p) for p in prompts], dtype=np.int64)
        width = int(sizes.max())
        self.settings.check_feed(0, width)
        if self.lengths[first : first + count].any() or first + count > self.settings.max_batch:
            raise ValueError(f"slots {first}..{first + count - 1} are not all empty")
        positions = self.settings.logits_positions(width)
        if self.batch_slack is None or width - int(sizes.min()) > min(
            self.batch_slack, positions - 1
        ):
            raise ValueError(f"prompt lengths {sizes.tolist()} differ too much for one run")
        input_ids = np.full((count, width), self.settings.pad_token_id, dtype=np.int64)
        for row, prompt in enumerate(prompts):
            input_ids[row, : len(prompt)] = prompt
        feeds = {
            "input_ids": input_ids,
            "attention_mask": (self._positions[None, :width] < sizes[:, None]).astype(np.int64),
        }
        if self.contract.position_ids:
            feeds["position_ids"] = np.tile(self._positions[None, :width], (count, 1))
        logits = self._graph(count, width).run(feeds, first, count, 0, positions)
        self.lengths[first : first + count] = sizes
        return logits[np.arange(count), sizes - 1 - (width - positions)]

    def _graph(self, rows: int, width: int) -> PromptGraph:
        """The graph a prompt run of `rows` × `width` tokens goes to: the prefill graph from
        `prefill_min_tokens` tokens, counted per run where it runs the rows together and
        per row where it runs them one by one (its fixed cost is paid per row then)."""
        bulk = self._bulk
        if bulk is not None:
            tokens = rows * width if bulk.batches_rows else width
            if tokens >= self.settings.prefill_min_tokens:
                return bulk
        return self._prompts

    def decode(
        self,
        slots: Sequence[int],
        tokens: Sequence[int],
        before_run: Callable[[], object] | None = None,
    ) -> np.ndarray:
        rows = np.asarray(slots, dtype=np.int64)
        low, high = int(rows.min()), int(rows.max()) + 1
        count = high - low
        index = rows - low
        input_ids = np.full((count, 1), self.settings.pad_token_id, dtype=np.int64)
        input_ids[index, 0] = tokens
        lengths = self.lengths[low:high]
        longest = int(lengths.max())
        self.settings.check_decode(longest)
        width = longest + 1
        step = self._step
        if self._batch_step is not None and count >= self.settings.decode_graph_min_rows:
            step = self._batch_step
        binding = step.binding
        binding.bind_cpu_input("input_ids", input_ids)
        binding.bind_cpu_input(
            "attention_mask", (self._positions[None, :width] <= lengths[:, None]).astype(np.int64)
        )
        if self.contract.position_ids:
            binding.bind_cpu_input("position_ids", lengths[:, None].copy())
        self.logits.bind(binding, count, 1)
        if step.rows != (low, count):
            self.cache.bind(binding, low, count)
            step.rows = (low, count)
        if before_run is not None:
            before_run()
        (step.session or self.session).run_with_iobinding(binding)
        self.lengths[rows] += 1
        logits = self.logits.view(count, 1)[:, 0]
        return (
            logits if count == len(rows) and index[0] == 0 and _ascending(index) else logits[index]
        )

    def verify(
        self, slot: int, token_ids: Sequence[int], before_run: Callable[[], object] | None = None
    ) -> np.ndarray:
        """Feed `token_ids` after what `slot` holds; logits for every position, or for the
        last `verify_tokens` where the graph projects only those (tokens forced by a grammar
        need none). The length does not move: see `advance`.

        One slot per run: GroupQueryAttention on CPU refuses a batch of several rows that
        each feed several tokens after a past ("batch_size must be 1 when sequence_length > 1
        and past context is given"), so drafted rows cannot share a run, padded or not.
        """
        start, count = int(self.lengths[slot]), len(token_ids)
        self.settings.check_feed(start, count)
        binding, session = self._prompts.binding, self.session
        bulk = self._bulk_verify
        if bulk is not None and count >= self.settings.decode_graph_min_rows:
            binding, session = bulk.binding, bulk.session
        binding.bind_cpu_input("input_ids", np.asarray(token_ids, dtype=np.int64)[None, :])
        binding.bind_cpu_input("attention_mask", np.ones((1, start + count), dtype=np.int64))
        if self.contract.position_ids:
            binding.bind_cpu_input("position_ids", self._positions[None, start : start + count])
        positions = self.settings.logits_positions(count)
        self.logits.bind(binding, 1, positions)
        self.cache.bind(binding, slot, 1)
        if before_run is not None:
            before_run()
        session.run_with_iobinding(binding)
        logits: np.ndarray = self.logits.view(1, positions)[0]
        return logits

    def advance(self, slot: int, tokens: int) -> None:
        """Count the first `tokens` of what `verify` fed `slot` as held: the KV written past
        them is stale, and the next run overwrites it."""
        self.lengths[slot] += tokens

    def release(self, slot: int) -> None:
        self.lengths[slot] = 0


@dataclass(slots=True)
class _StepBinding:
    """A decode-step binding of one graph, kept bound to the KV rows of its last step
    (`rows`: first, count), so a step over the same rows binds only its inputs."""

    binding: ort.IOBinding
    session: ort.InferenceSession | None = None
    """The graph's session; None: the runner's own, read at each step."""
    rows: tuple[int, int] | None = None


def _ascending(index: np.ndarray) -> bool:
    return bool(np.all(index[1:] > index[:-1]))
