"""The OpenAI wire shapes the upstream speaks: request bodies out, stream chunks in."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenwire import FinishReason, GenerationError, GenerationRequest, Usage

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"


def request_body(request: GenerationRequest, model: str) -> tuple[str, dict[str, Any]]:
    """The upstream path and JSON body for `request`, sent to the upstream model `model`."""
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        # Without this the upstream sends no token counts at all.
        "stream_options": {"include_usage": True},
    }
    # Only what the client sent: an omitted field leaves the upstream its model's defaults.
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.messages is not None:
        path = CHAT_PATH
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
    else:
        path = COMPLETIONS_PATH
        body["prompt"] = request.prompt
    if request.max_tokens is not None:
        # `max_tokens`, not the newer `max_completion_tokens`: llama.cpp and older vLLM
        # know only this one, and OpenAI still accepts it.
        body["max_tokens"] = request.max_tokens
    if request.seed is not None:
        body["seed"] = request.seed
    if request.stop:
        body["stop"] = list(request.stop)
    if request.top_k:
        # Not an OpenAI field; vLLM and llama.cpp read it as an extra. 0 means "off", and
        # strict servers reject unknown fields, so it is sent only when set.
        body["top_k"] = request.top_k
    return path, body


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one streamed chunk carries; any field may be absent."""

    text: str = ""
    finish_reason: str | None = None
    stop_reason: str | None = None
    usage: Usage | None = None


def parse_chunk(data: str, *, chat: bool) -> Chunk:
    """Read one `data:` payload of a chat (`delta.content`) or completions (`text`) stream.

    Raises:
        GenerationError: the payload is not a JSON object, or it is an in-band error.
    """
    try:
        document = json.loads(data)
    except ValueError:
        raise GenerationError("The upstream server sent a malformed stream chunk.") from None
    if not isinstance(document, dict):
        raise GenerationError("The upstream server sent a malformed stream chunk.")
    if document.get("error") is not None:
        raise UpstreamStreamError(document["error"])
    usage = _usage(document.get("usage"))
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return Chunk(usage=usage)  # the usage-only chunk has `"choices": []`
    choice: Mapping[str, Any] = choices[0]
    if chat:
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
    else:
        text = choice.get("text")
    finish_reason = choice.get("finish_reason")
    # vLLM names the stop string that matched; other servers leave it out.
    stop_reason = choice.get("stop_reason")
    return Chunk(
        text=text if isinstance(text, str) else "",
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        stop_reason=stop_reason if isinstance(stop_reason, str) else None,
        usage=usage,
    )


def finish_reason(upstream: str | None) -> FinishReason:
    """OpenAI's reasons in ours: "length" stays; stop, eos, tool_calls, content_filter stop."""
    return "length" if upstream == "length" else "stop"


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    details = value.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=_count(value.get("prompt_tokens")),
        completion_tokens=_count(value.get("completion_tokens")),
        cached_prompt_tokens=_count(cached),
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class UpstreamStreamError(GenerationError):
    """The upstream sent an in-band `{"error": ...}` payload in its stream.

    The client sees only a generic message: the upstream's text may name its internals
    (its model, its paths). `detail` keeps that text for the server log.
    """

    def __init__(self, detail: object) -> None:
        super().__init__("The upstream server failed while generating a response.")
        message = detail.get("message") if isinstance(detail, dict) else detail
        self.detail = str(message)[:500]
