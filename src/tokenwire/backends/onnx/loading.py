"""Loading a prepared model for `OnnxBackend`: tokenizer, chat template, the decode
session and the optional prefill graph's, the runner over them, and the speculator."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from tokenwire.backends.onnx._graph_io import RunnerSettings, last_positions
from tokenwire.backends.onnx.chat_template import ChatTemplate
from tokenwire.backends.onnx.constraints import ConstraintCompiler
from tokenwire.backends.onnx.manifest import ModelManifest
from tokenwire.backends.onnx.openvino_prompts import OpenVINOPromptGraph
from tokenwire.backends.onnx.options import BackendOptions
from tokenwire.backends.onnx.prompt_graphs import PromptGraphFactory, ort_prompt_graph
from tokenwire.backends.onnx.runner import ModelRunner, create_runner
from tokenwire.backends.onnx.session import Placement, create_session
from tokenwire.backends.onnx.speculation import Speculator


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """What `load_model` read: the runner, and what turns requests into its tokens."""

    runner: ModelRunner
    placement: Placement
    """Where the session really runs (`create_session` may settle on other providers)."""
    tokenizer: Tokenizer
    chat_template: ChatTemplate | None
    constraints: ConstraintCompiler


def load_model(
    directory: Path, manifest: ModelManifest, placement: Placement, options: BackendOptions
) -> LoadedModel:
    """Read the prepared model in `directory` (blocking: run it in a worker thread)."""
    tokenizer = Tokenizer.from_file(str(directory / manifest.tokenizer_file))
    # A truncating tokenizer.json would silently cut long prompts instead of refusing them.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    chat_template = load_template(directory, manifest, tokenizer)
    constraints = ConstraintCompiler(
        (directory / manifest.tokenizer_file).read_text(encoding="utf-8"),
        manifest.eos_token_ids[0],
    )
    runner, placement = load_runner(directory, manifest, placement, options)
    return LoadedModel(runner, placement, tokenizer, chat_template, constraints)


def load_runner(
    directory: Path, manifest: ModelManifest, placement: Placement, options: BackendOptions
) -> tuple[ModelRunner, Placement]:
    """The runner over the model file's session (and the prefill graph asked for, see
    `prompt_graph`), and where it really runs."""
    verify = verify_tokens(manifest, options)
    last_logits = manifest.logits == "last"
    # Verifying a draft needs logits for each position fed: widen the slice. A prompt
    # chunk's run then projects its last `verify` positions, not one.
    initializers = last_positions(verify) if last_logits and verify > 1 else None
    session, placement = create_session(
        directory / manifest.model_file,
        placement,
        intra_op_threads=options.intra_op_threads,
        allow_spinning=options.allow_spinning,
        denormal_as_zero=options.denormal_as_zero,
        initializers=initializers,
        stop_spinning_after_run=two_thread_pools(options),
    )
    prefill = prompt_graph(directory, manifest, placement, options, initializers)
    settings = RunnerSettings(
        max_batch=options.max_batch,
        max_context=options.context_length,
        max_run_tokens=options.prefill_chunk,
        pad_token_id=manifest.pad_token_id,
        last_logits=last_logits,
        verify_tokens=verify,
        prefill_min_tokens=options.prefill_graph_min_tokens,
        decode_graph_min_rows=options.prefill_graph_decode_rows,
    )
    runner = create_runner(session, manifest.kv, placement, settings, prefill)
    return runner, placement


def two_thread_pools(options: BackendOptions) -> bool:
    """Whether the process holds two ONNX Runtime sessions that take turns on the same
    cores (the int8 prefill graph beside the decode graph): then neither may spin idle
    between its runs (`create_session`'s `stop_spinning_after_run`)."""
    return options.prefill_graph == "int8"


def verify_tokens(manifest: ModelManifest, options: BackendOptions) -> int:
    """Positions a run returns logits for: one, or a whole draft and the token before it
    when speculation is on (the shared KV layout only)."""
    verify = 1
    if options.speculation is not None and manifest.kv.layout == "shared":
        verify += options.speculation.draft.max_tokens
    return verify


def prompt_graph(
    directory: Path,
    manifest: ModelManifest,
    placement: Placement,
    options: BackendOptions,
    initializers: dict[str, np.ndarray] | None,
) -> PromptGraphFactory | None:
    """The second graph large prompt runs go to (`prefill_graph`), or None.

    A graph asked for is used or refused with an error that says why: never skipped quietly.
    """
    if options.prefill_graph == "off":
        return None
    flag = "--prefill-graph" if options.prefill_graph == "int8" else "--bf16-prefill-graph"
    if placement.device != "cpu" or manifest.kv.layout != "shared":
        raise ValueError(
            f"prefill_graph={options.prefill_graph} runs on the CPU with the shared KV layout; "
            f"this model runs on {placement.device} with the {manifest.kv.layout} layout"
        )
    file = (
        manifest.prefill_model_file
        if options.prefill_graph == "int8"
        else manifest.prefill_bf16_file
    )
    if file is None:
        raise ValueError(
            f"{directory} has no {options.prefill_graph} prefill graph: prepare it with "
            f"`tokenwire prepare {flag}`"
        )
    if options.prefill_graph == "int8":
        session, _ = create_session(
            directory / file,
            placement,
            intra_op_threads=options.intra_op_threads,
            allow_spinning=options.allow_spinning,
            denormal_as_zero=options.denormal_as_zero,
            initializers=initializers,
            # It runs long prompt runs only, where GQA's flash path is the slower one:
            # a 545-token first token served 0.90x as long without it (docs/benchmarks.md).
            gqa_flash_attention=False,
            stop_spinning_after_run=two_thread_pools(options),
        )
        return ort_prompt_graph(session)
    path = directory / file
    threads, warm = options.intra_op_threads, options.prefill_chunk
    return lambda cache, _logits: OpenVINOPromptGraph(path, cache, threads, warm_tokens=warm)


def build_speculator(runner: ModelRunner, options: BackendOptions) -> Speculator | None:
    """The speculator for what `runner` can do: verifying drafts (speculation) and feeding
    forced tokens (fast-forward); None when neither is on or possible."""
    speculation = options.speculation if runner.can_verify else None
    if speculation is None and not (options.fast_forward and runner.can_feed):
        return None
    return Speculator(
        runner,
        speculation,
        options.context_length,
        fast_forward=options.fast_forward and runner.can_feed,
        max_feed=options.prefill_chunk,
        max_batch=options.speculation_max_batch,
    )


def load_template(
    directory: Path, manifest: ModelManifest, tokenizer: Tokenizer
) -> ChatTemplate | None:
    """The model's chat template: the manifest's file, else `tokenizer_config.json`'s; None
    when it has neither (it then serves raw prompts only)."""
    source = None
    if manifest.chat_template_file and (directory / manifest.chat_template_file).is_file():
        source = (directory / manifest.chat_template_file).read_text(encoding="utf-8")
    elif (directory / "tokenizer_config.json").is_file():
        config = json.loads((directory / "tokenizer_config.json").read_text("utf-8"))
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
