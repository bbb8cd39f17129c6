"""What becomes of a model run's row for its request: a sampled token, streamed tokens, or
the request's failure (one request's error never fails the batch)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from tokenwire.backends.onnx.generation import Generation
from tokenwire.errors import GenerationError, TokenwireError

logger = logging.getLogger("tokenwire.onnx")


def sample_row(generation: Generation, logits: np.ndarray) -> int:
    """`generation`'s next token from its logits row (in the worker); -1 if sampling failed."""
    try:
        return generation.sample(logits)
    except Exception:
        # One request's bad sampling must not fail the batch; -1 makes `accept_run` fail it.
        logger.exception("sampling failed (request %s)", generation.request_id)
        generation.exhausted = True
        return -1


def accept_run(generation: Generation, run: Sequence[int]) -> None:
    """Stream `run`'s tokens (on the loop), or fail the request when they cannot be."""
    try:
        if min(run) < 0:
            raise GenerationError("Sampling the next token failed.")
        generation.accept_run(run)
    except Exception as exc:
        logger.exception("streaming a token failed (request %s)", generation.request_id)
        generation.fail(wrap_error(exc))


def wrap_error(exc: Exception) -> TokenwireError:
    """`exc` as the error a client may see: ours as is, others behind a generic message."""
    if isinstance(exc, TokenwireError):
        return exc
    error = GenerationError("The model failed while generating a response.")
    error.__cause__ = exc
    return error
