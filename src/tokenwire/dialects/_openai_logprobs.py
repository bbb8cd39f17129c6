"""Per-token log probabilities in OpenAI's two shapes: chat's `logprobs.content` list and the
legacy Completions object of parallel arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenwire.events import TokenLogprob


def _bytes(token: str) -> list[int]:
    # Surrogate-escaped halves of a character (a tokenizer's byte-level token) keep their bytes.
    return list(token.encode("utf-8", "surrogateescape"))


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """`{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}], "refusal": null}`."""
    return {
        "content": [
            {
                "token": entry.token,
                "logprob": entry.logprob,
                "bytes": _bytes(entry.token),
                "top_logprobs": [
                    {"token": token, "logprob": logprob, "bytes": _bytes(token)}
                    for token, logprob in entry.top
                ],
            }
            for entry in entries
        ],
        "refusal": None,
    }


def legacy_logprobs(entries: Sequence[TokenLogprob], offset: int) -> dict[str, Any]:
    """Completions' `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`; `offset` is
    where the first token starts in the generated text (offsets run over the whole answer)."""
    offsets: list[int] = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return {
        "tokens": [entry.token for entry in entries],
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": [dict(entry.top) for entry in entries],
        "text_offset": offsets,
    }
