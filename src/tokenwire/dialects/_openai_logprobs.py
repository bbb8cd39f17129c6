"""Per-token log probabilities in OpenAI's shapes: a list of token entries (chat's
`logprobs.content`, the Responses API's `output_text.logprobs`) and the legacy Completions
object of parallel arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenwire.events import TokenLogprob


def _bytes(token: str) -> list[int]:
    # Surrogate-escaped halves of a character (a tokenizer's byte-level token) keep their bytes.
    return list(token.encode("utf-8", "surrogateescape"))


def logprobs_list(entries: Sequence[TokenLogprob]) -> list[dict[str, Any]]:
    """`[{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]`."""
    return [
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
    ]


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """`{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}], "refusal": null}`."""
    return {"content": logprobs_list(entries), "refusal": None}


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
