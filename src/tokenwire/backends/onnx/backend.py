"""`OnnxBackend`: the default backend, our own decode loop on an ONNX Runtime session."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from tokenizers import Tokenizer

from tokenwire.backends.onnx._graph_io import RunnerSettings, last_positions
from tokenwire.backends.onnx.chat_template import ChatTemplate
from tokenwire.backends.onnx.constraints import ConstraintCompiler, TokenConstraint
from tokenwire.backends.onnx.decode_loop import DecodeLoop
from tokenwire.backends.onnx.detokenizer import IncrementalDetokenizer, StopMatcher
from tokenwire.backends.onnx.drafting import DraftSettings
from tokenwire.backends.onnx.generation import Generation
from tokenwire.backends.onnx.kv_cache import token_bytes
from tokenwire.backends.onnx.manifest import ModelManifest, SamplingDefaults, default_model_dir
from tokenwire.backends.onnx.prefill_planner import LatencyGoal
from tokenwire.backends.onnx.runner import ModelRunner, create_runner
from tokenwire.backends.onnx.sampling import Sampler, SamplingParams, resolve_sampling
from tokenwire.backends.onnx.scheduler import BackendStats, Scheduler
from tokenwire.backends.onnx.session import Placement, create_session, resolve_device
from tokenwire.backends.onnx.speculation import DEFAULT_MAX_BATCH, SpeculationSettings, Speculator
from tokenwire.backends.onnx.tool_prompt import render_tool_turns
from tokenwire.errors import (
    ContextLengthExceededError,
    GenerationError,
    InvalidRequestError,
    ServiceUnavailableError,
    TokenwireError,
)
from tokenwire.events import Event, Finish
from tokenwire.interfaces import LoadSnapshot
from tokenwire.requests import GenerationRequest

logger = logging.getLogger("tokenwire.onnx")

# A prompt chunk beside running streams adds about this much to their gaps, so the largest
# gap is near the budget plus one decode step. Smaller budgets cost the long prompt dearly:
# a chunk of a few tokens costs nearly a whole decode step (the weights are read either way),
# so its TTFT grows steeply as the budget shrinks. The default keeps the running streams'
# largest gap under 100 ms on the benchmark CPU (the sweep: docs/benchmarks.md, "Gaps").
DEFAULT_PREFILL_BUDGET_MS = 30.0

# Speculation (prompt lookup) measured no worse than plain decoding on open-ended text and
# faster on text that copies its prompt: docs/benchmarks.md, "Speculation".
DEFAULT_SPECULATION = False

# Flushing denormal floats to zero: the bare int8 graph ran a 545-token prompt 1.25-1.35x
# and a batch-8 decode step 1.13-1.20x faster, but served the gain was within noise (TTFT
# 1.07x, 8 streams 0.98x): off (docs/benchmarks.md, "Prefill and batch throughput").
DEFAULT_DENORMAL_AS_ZERO = False

# The prefill graph more than halves a long prompt's time to first token on an AMX Xeon
# (563 -> 216 ms for 545 tokens, served), but its
# per-row int8 activations round more coarsely than MatMulNBits: over 50 short chat prompts
# the first greedy token agreed with fp32 on 82% (decode graph alone: 94%). Off by default:
# docs/benchmarks.md, "Prefill and batch throughput".
DEFAULT_PREFILL_GRAPH = False

# Prompt runs of at least this many tokens go to the prefill graph. Measured side by side on
# an AMX Xeon: the prefill graph is 1.4x the decode graph's speed at 16 rows, 1.2x at 8 and
# even at 1 (docs/benchmarks.md, "Prefill and batch throughput"); below 16 the small gain
# is not worth its slightly coarser rounding. 16 is also the scheduler's smallest chunk.
DEFAULT_PREFILL_GRAPH_MIN_TOKENS = 16

# OpenAI's range for `top_logprobs`.
MAX_TOP_LOGPROBS = 20


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
        prefill_chunk: the most prompt tokens run between two decode steps.
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
        speculative_tokens: the most tokens a sequence drafts per step.
        speculation_max_batch: speculate (and fast-forward) only while at most this many
            sequences decode.
        speculation_priced: draft only what measured verify costs and acceptance say pays
            (True), or every match at a length set by acceptance alone (False: it measured
            as good or better, docs/benchmarks.md "Speculation").
        fast_forward: feed the tokens a request's grammar forces (JSON keys, punctuation)
            in one run, without sampling them (the shared KV layout only).
        denormal_as_zero: flush denormal floats to zero in ORT's threads (faster steps;
            see docs/onnx-backend.md).
        prefill_graph: run prompt chunks on the model's prefill graph (int8 GEMM, see
            docs/onnx-backend.md) where the manifest has one, on CPU; decode steps stay on
            the model file's graph. Faster first tokens, coarser rounding: off by default.
        prefill_graph_min_tokens: the fewest prompt tokens (rows × width) a run needs to
            go to the prefill graph.

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
        prefill_chunk: int = 256,
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
        prefill_graph: bool = DEFAULT_PREFILL_GRAPH,
        prefill_graph_min_tokens: int = DEFAULT_PREFILL_GRAPH_MIN_TOKENS,
    ) -> None:
        self.model_dir = Path(model).expanduser() if model is not None else default_model_dir()
        if not (self.model_dir / "manifest.json").is_file():
            hint = "" if model is not None else " (the default model)"
            raise FileNotFoundError(
                f"No prepared model at {self.model_dir}{hint}. Run `tokenwire prepare` "
                "first, or name a prepared model directory."
            )
        self.manifest = ModelManifest.read(self.model_dir)
        self.model_id = self.manifest.model_id
        self.placement: Placement = resolve_device(device)
        for name, value, low in (
            ("max_batch", max_batch, 1),
            ("max_queue", max_queue, 0),
            ("prefill_chunk", prefill_chunk, 1),
        ):
            if int(value) < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        self.max_batch = int(max_batch)
        self.max_queue = int(max_queue)
        self.prefill_chunk = int(prefill_chunk)
        if prefill_budget_ms is not None and float(prefill_budget_ms) < 0:
            raise ValueError(f"prefill_budget_ms must be >= 0, got {prefill_budget_ms}")
        self.prefill_budget_ms = float(prefill_budget_ms or 0) or None
        for name, target in (("target_itl_ms", target_itl_ms), ("target_ttft_ms", target_ttft_ms)):
            if target is not None and not float(target) > 0:
                raise ValueError(f"{name} must be > 0 (milliseconds), got {target}")
        if target_ttft_ms is not None and target_itl_ms is None:
            raise ValueError("target_ttft_ms needs target_itl_ms (the pace chunks run at)")
        self.goal = LatencyGoal(
            None if target_itl_ms is None else float(target_itl_ms) / 1e3,
            None if target_ttft_ms is None else float(target_ttft_ms) / 1e3,
        )
        if not isinstance(batch_prefill, bool):
            raise ValueError(f"batch_prefill must be true or false, got {batch_prefill!r}")
        self.batch_prefill = batch_prefill
        if not isinstance(allow_spinning, bool):
            raise ValueError(f"allow_spinning must be true or false, got {allow_spinning!r}")
        self.allow_spinning = allow_spinning
        flags = (
            ("speculation", speculation),
            ("speculation_priced", speculation_priced),
            ("fast_forward", fast_forward),
        )
        for name, flag in flags:
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be true or false, got {flag!r}")
        if not isinstance(prefill_graph, bool):
            raise ValueError(f"prefill_graph must be true or false, got {prefill_graph!r}")
        if int(prefill_graph_min_tokens) < 1:
            raise ValueError(
                f"prefill_graph_min_tokens must be >= 1, got {prefill_graph_min_tokens}"
            )
        self.prefill_graph = prefill_graph
        if not isinstance(denormal_as_zero, bool):
            raise ValueError(f"denormal_as_zero must be true or false, got {denormal_as_zero!r}")
        self.denormal_as_zero = denormal_as_zero
        self.prefill_graph_min_tokens = int(prefill_graph_min_tokens)
        self.speculation = (
            SpeculationSettings(
                DraftSettings(max_tokens=int(speculative_tokens)),
                int(speculation_max_batch),
                priced=speculation_priced,
            )
            if speculation
            else None
        )
        self.fast_forward = fast_forward
        self.speculation_max_batch = int(speculation_max_batch)
        limit = self.manifest.kv.max_context
        if max_context is not None and not 2 <= int(max_context) <= limit:
            raise ValueError(
                f"max_context must be between 2 and {limit} (the model's), got {max_context}"
            )
        self.context_length = int(max_context) if max_context is not None else limit
        self.intra_op_threads = int(intra_op_threads) if intra_op_threads is not None else None
        self.sampling_overrides = SamplingDefaults(
            default_temperature, default_top_p, default_top_k, source="server"
        )
        for defaults, origin in (
            (self.sampling_overrides, "backend option default_"),
            (self.manifest.sampling_defaults, f"{self.model_dir / 'manifest.json'}: "),
        ):
            try:
                resolve_sampling(None, None, None, defaults)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{origin}{exc}") from None
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
            speculator=self._speculator(runner),
        )
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._loop.run, name="tokenwire-onnx-decode-loop")

    def _speculator(self, runner: ModelRunner) -> Speculator | None:
        speculation = self.speculation if runner.can_verify else None
        if speculation is None and not (self.fast_forward and runner.can_feed):
            return None
        return Speculator(
            runner,
            speculation,
            self.context_length,
            fast_forward=self.fast_forward and runner.can_feed,
            max_feed=self.prefill_chunk,
            max_batch=self.speculation_max_batch,
        )

    def _load(self) -> ModelRunner:
        manifest, directory = self.manifest, self.model_dir
        tokenizer = Tokenizer.from_file(str(directory / manifest.tokenizer_file))
        # A truncating tokenizer.json would silently cut long prompts instead of refusing them.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.chat_template = self._load_template(tokenizer)
        self.constraints = ConstraintCompiler(
            (directory / manifest.tokenizer_file).read_text(encoding="utf-8"),
            manifest.eos_token_ids[0],
        )
        verify = 1
        if self.speculation is not None and manifest.kv.layout == "shared":
            verify += self.speculation.draft.max_tokens
        last_logits = manifest.logits == "last"
        # Verifying a draft needs logits for each position fed: widen the slice. A prompt
        # chunk's run then projects its last `verify` positions, not one.
        initializers = last_positions(verify) if last_logits and verify > 1 else None
        session, self.placement = create_session(
            directory / manifest.model_file,
            self.placement,
            intra_op_threads=self.intra_op_threads,
            allow_spinning=self.allow_spinning,
            denormal_as_zero=self.denormal_as_zero,
            initializers=initializers,
        )
        prefill_session = None
        if self._uses_prefill_graph():
            assert manifest.prefill_model_file is not None
            prefill_session, _ = create_session(
                directory / manifest.prefill_model_file,
                self.placement,
                intra_op_threads=self.intra_op_threads,
                allow_spinning=self.allow_spinning,
                denormal_as_zero=self.denormal_as_zero,
                initializers=initializers,
            )
        settings = RunnerSettings(
            max_batch=self.max_batch,
            max_context=self.context_length,
            max_run_tokens=self.prefill_chunk,
            pad_token_id=manifest.pad_token_id,
            last_logits=last_logits,
            verify_tokens=verify,
            prefill_min_tokens=self.prefill_graph_min_tokens,
        )
        return create_runner(session, manifest.kv, self.placement, settings, prefill_session)

    def _uses_prefill_graph(self) -> bool:
        """The prefill graph is asked for, there is one, and it fits: on the host only (its
        integer GEMM is a CPU kernel), with the shared KV layout it was built for."""
        return (
            self.prefill_graph
            and self.manifest.prefill_model_file is not None
            and self.placement.device == "cpu"
            and self.manifest.kv.layout == "shared"
        )

    def _load_template(self, tokenizer: Tokenizer) -> ChatTemplate | None:
        manifest, source = self.manifest, None
        if manifest.chat_template_file and (self.model_dir / manifest.chat_template_file).is_file():
            source = (self.model_dir / manifest.chat_template_file).read_text(encoding="utf-8")
        elif (self.model_dir / "tokenizer_config.json").is_file():
            config = json.loads((self.model_dir / "tokenizer_config.json").read_text("utf-8"))
            if isinstance(config.get("chat_template"), str):
                source = config["chat_template"]
        if source is None:
            return None
        bos = manifest.bos_token_id
        return ChatTemplate(
            source,
            bos_token=tokenizer.id_to_token(bos) if bos is not None else None,
            eos_token=tokenizer.id_to_token(manifest.eos_token_ids[0]),
        )

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
        _check_agent_fields(request)
        assert self.constraints is not None
        grammar, constraint = self.constraints.grammar(request), None
        if grammar is not None:
            # Compiling a large schema can take a while (llguidance releases the GIL).
            constraint = await anyio.to_thread.run_sync(self.constraints.matcher, *grammar)
        generation = self._prepare(request, constraint)
        replayed = self._replay(generation, request.continuation)
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

    def _replay(self, generation: Generation, groups: tuple[tuple[int, ...], ...]) -> list[Event]:
        """A continuation's events: each group of tokens taken as sampled ones are, then the
        group's delta (and a Finish, should they end it); the tokens are prefilled after the
        prompt. Checked against the context, since the model saw them once already.

        Raises:
            InvalidRequestError: the request asks for logprobs (see `can_continue`).
            ContextLengthExceededError: prompt and continuation leave no room to generate.
        """
        if not groups:
            return []
        if generation.top_logprobs is not None:
            raise InvalidRequestError(
                "A request with logprobs cannot be continued.", param="logprobs"
            )
        ids = [token for group in groups for token in group]
        if len(generation.prompt_ids) + len(ids) >= self.context_length:
            raise ContextLengthExceededError(
                "The continuation leaves no room in the context to generate.", param="messages"
            )
        events: list[Event] = []
        for group in groups:
            generation.replay(group)
            while True:
                try:
                    item = generation.receive.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                if isinstance(item, TokenwireError):
                    raise item
                events.append(item)
        generation.extend_prompt(ids)
        return events

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The prompt as the model reads it: messages through the chat template, with the
        tools offered (described in a system turn when the template has no tools of its
        own), or the raw prompt with the tokenizer's special tokens."""
        tokenizer = self.tokenizer
        assert tokenizer is not None
        if request.messages is None:
            return list(tokenizer.encode(request.prompt or "", add_special_tokens=True).ids)
        if self.chat_template is None:
            raise InvalidRequestError(
                f"Model {self.model_id!r} has no chat template; send a raw prompt instead.",
                param="messages",
            )
        # tool_choice "none": the model is not told of the tools (it cannot call them).
        tools = request.tools if request.tool_choice.mode != "none" else ()
        if self.chat_template.uses_tools:
            text = self.chat_template.render(request.messages, tools)
        else:
            text = self.chat_template.render(render_tool_turns(request.messages, tools))
        return list(tokenizer.encode(text, add_special_tokens=False).ids)

    def _prepare(
        self, request: GenerationRequest, constraint: TokenConstraint | None = None
    ) -> Generation:
        tokenizer = self.tokenizer
        assert tokenizer is not None
        prompt = np.asarray(self._prompt_ids(request), dtype=np.int64)
        if len(prompt) == 0:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        if len(prompt) >= self.context_length:
            raise ContextLengthExceededError(
                f"The prompt is {len(prompt)} tokens, but this model's context is "
                f"{self.context_length} tokens and at least one must be left to generate.",
                param="messages" if request.is_chat else "prompt",
            )
        room = self.context_length - len(prompt)
        if request.max_tokens is not None and request.max_tokens < 1:
            raise InvalidRequestError(
                f"max_tokens must be at least 1, got {request.max_tokens}", param="max_tokens"
            )
        if request.max_tokens is not None and request.max_tokens > room:
            # Refused, as vLLM does, rather than cut: silently running to the context end
            # held a non-streamed request's connection for minutes.
            raise ContextLengthExceededError(
                f"This model's context is {self.context_length} tokens and the prompt takes "
                f"{len(prompt)}, which leaves {room} to generate, but max_tokens asks for "
                f"{request.max_tokens}. Ask for at most {room}, or shorten the prompt.",
                param="max_tokens",
            )
        budget = min(room, request.max_tokens or request.default_max_tokens or room)
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


def _check_agent_fields(request: GenerationRequest) -> None:
    """Refuse what a client asked for and this backend cannot do, naming the field."""
    if request.reasoning:
        # No model this backend serves has a thinking mode yet; a 400 beats a silent no.
        raise InvalidRequestError(
            "This model cannot reason before answering; send reasoning off or leave it out.",
            param="reasoning",
        )
    if not 0 <= request.top_logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidRequestError(
            f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {request.top_logprobs}",
            param="top_logprobs",
        )
    if request.tools and not request.is_chat and request.tool_choice.mode == "auto":
        raise InvalidRequestError(
            "Tools can be offered only to a chat request (messages), not a raw prompt.",
            param="tools",
        )
