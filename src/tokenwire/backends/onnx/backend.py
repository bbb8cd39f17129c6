"""`OnnxBackend`: the default backend, our own decode loop on an ONNX Runtime session.

Its options are checked in `options`, the model is read in `loading`, and requests are
checked and turned into prompts in `admission`; this module runs the loop and the streams.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from tokenizers import Tokenizer

from tokenwire.backends.onnx import admission
from tokenwire.backends.onnx.chat_template import ChatTemplate
from tokenwire.backends.onnx.constraints import ConstraintCompiler, TokenConstraint
from tokenwire.backends.onnx.decode_loop import DecodeLoop
from tokenwire.backends.onnx.detokenizer import IncrementalDetokenizer, StopMatcher
from tokenwire.backends.onnx.generation import Generation
from tokenwire.backends.onnx.kv_cache import token_bytes
from tokenwire.backends.onnx.loading import build_speculator, load_model
from tokenwire.backends.onnx.manifest import ModelManifest, default_model_dir
from tokenwire.backends.onnx.options import (
    DEFAULT_DENORMAL_AS_ZERO,
    DEFAULT_PREFILL_BUDGET_MS,
    DEFAULT_PREFILL_GRAPH,
    DEFAULT_PREFILL_GRAPH_MIN_TOKENS,
    DEFAULT_SPECULATION,
    check_options,
)
from tokenwire.backends.onnx.runner import ModelRunner
from tokenwire.backends.onnx.sampling import Sampler, SamplingParams, resolve_sampling
from tokenwire.backends.onnx.scheduler import BackendStats, Scheduler
from tokenwire.backends.onnx.session import Placement, resolve_device
from tokenwire.backends.onnx.speculation import DEFAULT_MAX_BATCH
from tokenwire.errors import (
    GenerationError,
    InvalidRequestError,
    ServiceUnavailableError,
    TokenwireError,
)
from tokenwire.events import Event, Finish
from tokenwire.interfaces import LoadSnapshot
from tokenwire.requests import GenerationRequest

logger = logging.getLogger("tokenwire.onnx")

# Re-exported: these lived here before `options` held them, and docs and scripts name them.
__all__ = [
    "DEFAULT_DENORMAL_AS_ZERO",
    "DEFAULT_PREFILL_BUDGET_MS",
    "DEFAULT_PREFILL_GRAPH",
    "DEFAULT_PREFILL_GRAPH_MIN_TOKENS",
    "DEFAULT_SPECULATION",
    "OnnxBackend",
]


class OnnxBackend:
    """Serves a model prepared by `tokenwire prepare` with continuous batching.

    Reuses cached prompt prefixes when the `prompt_cache` middleware offers a cache (on the
    host: CPU, or the concat layout on any device). Constrains output with llguidance
    (`constraint`, forced tool calls) and writes tool calls as Hermes markup in the text,
    which the router's tool-call middleware turns into tool-call events.

    Args:
        model: the prepared model directory; None serves the default model.
        device: "cpu", or "cuda" (the KV cache then stays on the GPU).
        max_batch: sequences decoded together (KV slots).
        max_queue: requests that may wait for a slot; more are refused with 429.
        prefill_chunk: the most prompt tokens run between two decode steps (None: 256, or
            1,024 with `prefill_graph="bf16"`, which runs a long prompt faster whole).
        prefill_budget_ms: while other sequences decode, prompt chunks are cut to about
            this much model time (measured as prompts run), which bounds how much a long
            prompt stretches their inter-token gaps; 0 or None always runs whole
            `prefill_chunk`s.
        target_itl_ms: a latency goal in place of `prefill_budget_ms`: the running streams'
            largest inter-token gap; a chunk gets this less the measured decode step.
        target_ttft_ms: with `target_itl_ms`, the oldest prompt's chunks grow to what gives
            its first token within this (from its arrival), at the running streams' cost.
        batch_prefill: prefill fresh prompts that fit the budget whole, several in one run
            where their slots are contiguous (False: one prompt per run, chunks cut wherever
            the budget ends, the scheduler before this option, kept for comparison).
        max_context: tokens per sequence (prompt and completion); at most the model's.
        intra_op_threads: ONNX Runtime threads per step; None lets ORT choose.
        allow_spinning: whether ORT's idle intra-op threads spin-wait for work (its
            default). Spinning makes steps faster on cores the server has to itself and
            costs CPU time; turn it off where cores are shared or CPU is metered.
        default_temperature: the temperature of requests that send none, over the model's
            recommended one (the manifest's `sampling_defaults`); None keeps the model's,
            and without one, 1.0.
        default_top_p: likewise for `top_p` (neutral: 1.0).
        default_top_k: likewise for `top_k` (neutral: 0, off).
        speculation: draft tokens by prompt lookup and verify them in one run (the shared
            KV layout only); output is unchanged, see docs/onnx-backend.md.
        speculative_tokens: the most tokens a sequence drafts per step (every match, where
            such a draft is verified on the int8 prefill graph; 16 measured best there).
        speculation_max_batch: speculate (and fast-forward) only while at most this many
            sequences decode.
        speculation_priced: draft only what measured verify costs and acceptance say pays
            (True), or every match at a length set by acceptance alone (False: it measured
            as good or better, docs/benchmarks.md "Speculation").
        fast_forward: feed the tokens a request's grammar forces (JSON keys, punctuation)
            in one run, without sampling them (the shared KV layout only).
        denormal_as_zero: flush denormal floats to zero in ORT's threads (faster steps;
            see docs/onnx-backend.md).
        prefill_graph: run prompt chunks on one of the model's prefill graphs, on CPU,
            decode steps staying on the model file's graph (docs/onnx-backend.md): "int8"
            (or true: ONNX Runtime's int8 GEMM, coarser rounding), "bf16" (OpenVINO in
            bf16, needs `tokenwire[openvino]` and a CPU with bf16), or "off" (false).
        prefill_graph_min_tokens: the fewest prompt tokens (rows × width) a run needs to
            go to the prefill graph (None: 16, or 64 for the bf16 graph).
        prefill_graph_decode_rows: run decode steps of at least this many rows, and draft
            verify runs of at least this many positions, on the int8 prefill graph too (0:
            never). Its AMX GEMM makes a batch-8 step about 1.7x faster on a Sapphire
            Rapids Xeon, and a verify of 8 drafts 1.4 plain steps instead of 2.3, at its
            coarser rounding.

    Raises:
        FileNotFoundError: no prepared model is there (run `tokenwire prepare`).
    """

    tool_call_format = "hermes"
    """How tool calls appear in the text stream (the router adds the matching parser)."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        max_batch: int = 8,
        max_queue: int = 64,
        prefill_chunk: int | None = None,
        prefill_budget_ms: float | None = DEFAULT_PREFILL_BUDGET_MS,
        target_itl_ms: float | None = None,
        target_ttft_ms: float | None = None,
        batch_prefill: bool = True,
        max_context: int | None = None,
        intra_op_threads: int | None = None,
        allow_spinning: bool = True,
        default_temperature: float | None = None,
        default_top_p: float | None = None,
        default_top_k: int | None = None,
        speculation: bool = DEFAULT_SPECULATION,
        speculative_tokens: int = 8,
        speculation_max_batch: int = DEFAULT_MAX_BATCH,
        speculation_priced: bool = False,
        fast_forward: bool = True,
        denormal_as_zero: bool = DEFAULT_DENORMAL_AS_ZERO,
        prefill_graph: bool | str = DEFAULT_PREFILL_GRAPH,
        prefill_graph_min_tokens: int | None = None,
        prefill_graph_decode_rows: int = 0,
    ) -> None:
        self.model_dir = Path(model).expanduser() if model is not None else default_model_dir()
        if not (self.model_dir / "manifest.json").is_file():
            hint = "" if model is not None else " (the default model)"
            raise FileNotFoundError(
                f"No prepared model at {self.model_dir}{hint}. Run `tokenwire prepare` "
                "first, or name a prepared model directory."
            )
        self.manifest: ModelManifest = ModelManifest.read(self.model_dir)
        self.model_id = self.manifest.model_id
        self.placement: Placement = resolve_device(device)
        self.options = options = check_options(
            self.manifest,
            self.model_dir,
            max_batch=max_batch,
            max_queue=max_queue,
            prefill_chunk=prefill_chunk,
            prefill_budget_ms=prefill_budget_ms,
            target_itl_ms=target_itl_ms,
            target_ttft_ms=target_ttft_ms,
            batch_prefill=batch_prefill,
            max_context=max_context,
            intra_op_threads=intra_op_threads,
            allow_spinning=allow_spinning,
            default_temperature=default_temperature,
            default_top_p=default_top_p,
            default_top_k=default_top_k,
            speculation=speculation,
            speculative_tokens=speculative_tokens,
            speculation_max_batch=speculation_max_batch,
            speculation_priced=speculation_priced,
            fast_forward=fast_forward,
            denormal_as_zero=denormal_as_zero,
            prefill_graph=prefill_graph,
            prefill_graph_min_tokens=prefill_graph_min_tokens,
            prefill_graph_decode_rows=prefill_graph_decode_rows,
        )
        # The checked options, under the names they always had here (read by tests, scripts).
        self.max_batch = options.max_batch
        self.max_queue = options.max_queue
        self.prefill_chunk = options.prefill_chunk
        self.prefill_budget_ms = options.prefill_budget_ms
        self.goal = options.goal
        self.batch_prefill = options.batch_prefill
        self.allow_spinning = options.allow_spinning
        self.speculation = options.speculation
        self.speculation_max_batch = options.speculation_max_batch
        self.fast_forward = options.fast_forward
        self.denormal_as_zero = options.denormal_as_zero
        self.prefill_graph = options.prefill_graph
        self.prefill_graph_min_tokens = options.prefill_graph_min_tokens
        self.prefill_graph_decode_rows = options.prefill_graph_decode_rows
        self.context_length = options.context_length
        self.intra_op_threads = options.intra_op_threads
        self.sampling_overrides = options.sampling_overrides
        # Seeds this model's keys in a prefix cache: cached KV is only valid for the weights
        # that made it.
        self.prefix_namespace = (
            f"{self.model_id}\0{self.model_dir.resolve()}\0{self.manifest.kv.layout}"
        )
        self.tokenizer: Tokenizer | None = None
        self.chat_template: ChatTemplate | None = None
        self.constraints: ConstraintCompiler | None = None
        self._loop: DecodeLoop | None = None
        self._task_group: Any = None

    @property
    def healthy(self) -> bool:
        """False while model runs keep failing; the host's readiness check reads it."""
        return self._loop is None or self._loop.healthy

    @property
    def stats(self) -> BackendStats:
        if self._loop is None:
            return BackendStats(0, 0, 0, self.max_batch, 0, 0, 0)
        return self._loop.stats()

    def load(self) -> LoadSnapshot:
        """The scheduler's counts now (`ReportsLoad`, read by the metrics middleware at scrape).

        The KV cache is allocated a whole slot (`max_context` tokens) per sequence, so the share
        of slots taken is the share of KV capacity in use: a full pod admits nothing more,
        however short its sequences (a token count would call it nearly empty).
        """
        stats = self.stats
        return LoadSnapshot(
            waiting=stats.waiting,
            running=stats.running + stats.prefilling,
            batch_size=stats.running,
            kv_used_fraction=(self.max_batch - stats.free_slots) / self.max_batch,
            kv_token_bytes=token_bytes(self.manifest.kv),
        )

    async def start(self) -> None:
        """Load the tokenizer and the session (in a worker thread), then start the loop."""
        if self._loop is not None:
            raise RuntimeError("OnnxBackend is already started")
        runner = await anyio.to_thread.run_sync(self._load)
        self._loop = DecodeLoop(
            runner,
            Scheduler(max_batch=self.max_batch, max_queue=self.max_queue),
            prefill_chunk=self.prefill_chunk,
            prefill_budget=None if self.prefill_budget_ms is None else self.prefill_budget_ms / 1e3,
            prefix_namespace=self.prefix_namespace,
            kv_token_bytes=token_bytes(self.manifest.kv),
            goal=self.goal,
            batch_prefill=self.batch_prefill,
            speculator=build_speculator(runner, self.options),
        )
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._loop.run, name="tokenwire-onnx-decode-loop")

    def _load(self) -> ModelRunner:
        """Read the model (blocking: `start` runs it in a worker thread)."""
        loaded = load_model(self.model_dir, self.manifest, self.placement, self.options)
        self.tokenizer = loaded.tokenizer
        self.chat_template = loaded.chat_template
        self.constraints = loaded.constraints
        self.placement = loaded.placement
        return loaded.runner

    async def close(self) -> None:
        """Stop the loop (after the step in flight) and end every stream still open."""
        loop, task_group = self._loop, self._task_group
        self._loop = self._task_group = None
        if loop is not None:
            loop.stop()
        if task_group is not None:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
        if loop is not None:
            for generation in loop.scheduler.drain():
                generation.fail(ServiceUnavailableError("The server is shutting down."))
                generation.retire()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Stream `request`'s tokens; ends with one `Finish`.

        Raises:
            QueueFullError: too many requests are waiting (before the first event).
            ContextLengthExceededError: the prompt does not fit the context, or `max_tokens`
                asks for more than it leaves after the prompt.
            InvalidRequestError: the request cannot be rendered or sampled as given, its
                `response_format`, `tools` or `tool_choice` do not compile to a grammar, or it
                asks for what this model cannot do (`reasoning`).
        """
        loop = self._loop
        if loop is None:
            raise ServiceUnavailableError("The ONNX backend is not started.")
        admission.check_agent_fields(request)
        assert self.constraints is not None
        grammar, constraint = self.constraints.grammar(request), None
        if grammar is not None:
            # Compiling a large schema can take a while (llguidance releases the GIL).
            constraint = await anyio.to_thread.run_sync(self.constraints.matcher, *grammar)
        generation = self._prepare(request, constraint)
        replayed = admission.replay(generation, request.continuation, self.context_length)
        try:
            for event in replayed:
                yield event
            if not generation.active:
                return  # the replayed tokens ended it (their Finish was among the events)
            loop.scheduler.submit(generation)
            loop.wake()
            async for item in generation.receive:
                if isinstance(item, TokenwireError):
                    raise item
                yield item
                if isinstance(item, Finish):
                    return
            raise GenerationError("The generation stream ended unexpectedly.")
        finally:
            generation.receive.close()
            if generation.active:
                # Closed or cancelled mid-stream (the client left): the loop frees the slot
                # at the next step boundary.
                loop.scheduler.withdraw(generation)
                loop.wake()

    def can_continue(self, request: GenerationRequest) -> bool:
        """Whether `generate` continues this request (`ContinuesGeneration`): not when it asks
        for logprobs (the replayed tokens' were sent and are not kept)."""
        return not request.logprobs

    def sampling_params(self, request: GenerationRequest) -> SamplingParams:
        """What `request` samples with: its own fields, else the server's defaults, else the
        model's, else neutral (temperature 1, top_p 1, top_k off).

        Raises:
            ValueError: a value is out of range.
        """
        return resolve_sampling(
            request.temperature,
            request.top_p,
            request.top_k,
            self.sampling_overrides,
            self.manifest.sampling_defaults,
        )

    async def count_tokens(self, request: GenerationRequest) -> int:
        """The tokens `generate` would prefill for `request` (its context limits aside).

        Raises:
            ServiceUnavailableError: the backend is not started.
            InvalidRequestError: the model has no chat template for messages, or the
                template rejected them.
        """
        if self.tokenizer is None:
            raise ServiceUnavailableError("The ONNX backend is not started.")
        return len(self._prompt_ids(request))

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The prompt as the model reads it (`admission.prompt_ids`)."""
        assert self.tokenizer is not None
        return admission.prompt_ids(request, self.tokenizer, self.chat_template, self.model_id)

    def _prepare(
        self, request: GenerationRequest, constraint: TokenConstraint | None = None
    ) -> Generation:
        tokenizer = self.tokenizer
        assert tokenizer is not None
        prompt = np.asarray(self._prompt_ids(request), dtype=np.int64)
        budget = admission.generation_budget(request, len(prompt), self.context_length)
        try:
            params = self.sampling_params(request)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
        assert self._loop is not None
        return Generation(
            request.request_id,
            prompt,
            max_new_tokens=budget,
            sampler=Sampler(params, request.seed),
            detokenizer=IncrementalDetokenizer(tokenizer),
            stops=StopMatcher(request.stop),
            eos_token_ids=frozenset(self.manifest.eos_token_ids),
            prompt_cache=request.prompt_cache if self._loop.runner.prefix_reuse else None,
            constraint=constraint,
            top_logprobs=request.top_logprobs if request.logprobs else None,
        )
