"""Creating the ONNX Runtime session: provider choice per device, and a warning on fallback."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

logger = logging.getLogger("tokenwire.onnx")

DEVICES = ("cpu", "cuda")

_PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
}


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the KV cache lives and which execution providers run the graph.

    `ort_device` is the device name OrtValues and IOBinding take ("cpu" or "cuda").
    """

    device: str
    providers: tuple[str, ...]
    ort_device: str
    device_id: int = 0


def resolve_device(device: str) -> Placement:
    """The placement for a `device` option ("cpu", "cuda" or "cuda:N").

    Raises:
        ValueError: the device is not one of the supported names.
    """
    name, _, index = device.strip().lower().partition(":")
    if name not in _PROVIDERS or (index and not index.isdigit()):
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {device!r}")
    return Placement(name, _PROVIDERS[name], name, int(index or 0))


def create_session(
    model_path: Path,
    placement: Placement,
    *,
    intra_op_threads: int | None = None,
    allow_spinning: bool = True,
    denormal_as_zero: bool = False,
    initializers: Mapping[str, np.ndarray] | None = None,
    gqa_flash_attention: bool = True,
    stop_spinning_after_run: bool = False,
) -> tuple[ort.InferenceSession, Placement]:
    """Load `model_path` for `placement`.

    `allow_spinning=False` stops idle intra-op threads from spin-waiting for work: slower
    steps on dedicated cores, far less CPU burnt (and faster) where cores are shared.

    `denormal_as_zero=True` flushes denormal floats to zero in ORT's threads (their
    arithmetic is slow on x86; docs/onnx-backend.md).

    `initializers` replace the graph's constants of those names (ORT's `add_initializer`).

    `gqa_flash_attention=False` builds the CPU `GroupQueryAttention` kernels without their
    flash path (ORT reads `ORT_GQA_DISABLE_FLASH_ATTENTION` only when a kernel is built, and
    has no session option for it): faster for long prompt runs, slower for short runs over a
    long past (docs/benchmarks.md, "Where prefill attention's time goes").

    `stop_spinning_after_run=True` sends the intra-op threads to sleep when a run ends
    (`session.force_spinning_stop`): they still spin between a run's parallel sections. For
    two sessions in one process, each with its own thread pool, run one after the other:
    otherwise the idle pool spins on the same cores while the other one runs (the first
    decode step after a prompt run on the int8 prefill graph took 2-3x as long, and a verify
    run there 1.4x; docs/benchmarks.md, "Speculation").

    Returns the session and the placement it really got: when ORT fell back from the CUDA
    provider to CPU (a warning says so), the KV cache must live on the host as well.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads is not None:
        if intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        options.intra_op_num_threads = intra_op_threads
    if not allow_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if stop_spinning_after_run:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    if denormal_as_zero:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    overrides = [(n, ort.OrtValue.ortvalue_from_numpy(a)) for n, a in (initializers or {}).items()]
    for name, value in overrides:
        options.add_initializer(name, value)
    if overrides:
        # A replaced constant can make an output's shape differ from the one the graph
        # declares (the last-position logits slice): ORT would warn on every run.
        options.log_severity_level = 3
    providers: list[Any] = list(placement.providers)
    if placement.device == "cuda":
        providers[0] = ("CUDAExecutionProvider", {"device_id": placement.device_id})
    with _gqa_flash_attention(gqa_flash_attention):
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    # ORT reads the replaced constants for as long as the session lives.
    session._tokenwire_initializers = overrides
    if not check_providers(placement, session.get_providers()):
        placement = resolve_device("cpu")
    return session, placement


def check_providers(placement: Placement, actual: list[str]) -> bool:
    """Whether the session got the provider asked for; logs a warning when it did not.

    ORT silently falls back to CPU when, say, the CUDA libraries are missing, which would put
    every step through host copies; the warning names what was asked and what was given.
    """
    wanted = placement.providers[0]
    if actual and actual[0] == wanted:
        return True
    logger.warning(
        "ONNX Runtime could not use %s for device %r and fell back to %s; "
        "check the onnxruntime-gpu install and the CUDA libraries",
        wanted,
        placement.device,
        ", ".join(actual) or "nothing",
    )
    return False


_ENVIRONMENT = threading.Lock()
_GQA_FLASH_SWITCH = "ORT_GQA_DISABLE_FLASH_ATTENTION"


@contextmanager
def _gqa_flash_attention(enabled: bool) -> Iterator[None]:
    """ORT's switch for GQA's CPU flash path, set only while one session is built (the
    environment is the process's: other sessions keep their own choice)."""
    if enabled:
        yield
        return
    with _ENVIRONMENT:
        before = os.environ.get(_GQA_FLASH_SWITCH)
        os.environ[_GQA_FLASH_SWITCH] = "1"
        try:
            yield
        finally:
            if before is None:
                del os.environ[_GQA_FLASH_SWITCH]
            else:
                os.environ[_GQA_FLASH_SWITCH] = before
