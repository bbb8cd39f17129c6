"""The upstream's stream chunks, read: text, reasoning, tool-call fragments, logprobs, usage."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenwire import FinishReason, GenerationError, TokenLogprob, Usage
from tokenwire_upstream._tool_calls import ToolCallFragment


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one streamed chunk carries; any field may be absent.

    `logprobs` covers the chunk's tokens, `reasoning` and `text` alike (None: none sent).
    """

    text: str = ""
    finish_reason: str | None = None
    stop_reason: str | None = None
    usage: Usage | None = None
    reasoning: str = ""
    tool_calls: tuple[ToolCallFragment, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None


def parse_chunk(data: str, *, chat: bool, top_logprobs: int = 0) -> Chunk:
    """Read one `data:` payload of a chat (`delta`) or completions (`text`) stream.

    Each token's alternatives are cut to the `top_logprobs` most likely (vLLM's legacy
    endpoint adds the chosen token to them).

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
    reasoning: object = None
    tool_calls: tuple[ToolCallFragment, ...] = ()
    if chat:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {}
        text = delta.get("content")
        # vLLM renamed `reasoning_content` (still DeepSeek's and llama.cpp's) to `reasoning`.
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        tool_calls = _tool_call_fragments(delta.get("tool_calls"))
        logprobs = _chat_logprobs(choice.get("logprobs"), top_logprobs)
    else:
        text = choice.get("text")
        logprobs = _legacy_logprobs(choice.get("logprobs"), top_logprobs)
    finish_reason = choice.get("finish_reason")
    # vLLM names the stop string that matched; other servers leave it out.
    stop_reason = choice.get("stop_reason")
    return Chunk(
        text=text if isinstance(text, str) else "",
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        stop_reason=stop_reason if isinstance(stop_reason, str) else None,
        usage=usage,
        reasoning=reasoning if isinstance(reasoning, str) else "",
        tool_calls=tool_calls,
        logprobs=logprobs,
    )


def finish_reason(upstream: str | None, *, called_tools: bool = False) -> FinishReason:
    """OpenAI's reasons in ours: "length" stays; a turn that called tools ends in
    "tool_calls" (OpenAI and vLLM say "stop" after a forced call); the rest stop."""
    if upstream == "length":
        return "length"
    if called_tools and upstream in (None, "stop", "tool_calls", "function_call"):
        return "tool_calls"
    return "stop"


def _tool_call_fragments(value: object) -> tuple[ToolCallFragment, ...]:
    if not isinstance(value, list):
        return ()
    fragments = []
    for entry in value:
        if not isinstance(entry, dict):
            raise GenerationError("The upstream server sent a malformed tool call.")
        function = entry.get("function")
        if not isinstance(function, dict):
            function = {}
        index, call_id = entry.get("index"), entry.get("id")
        name, arguments = function.get("name"), function.get("arguments")
        fragments.append(
            ToolCallFragment(
                index if isinstance(index, int) and not isinstance(index, bool) else None,
                call_id if isinstance(call_id, str) and call_id else None,
                name if isinstance(name, str) and name else None,
                arguments if isinstance(arguments, str) else "",
            )
        )
    return tuple(fragments)


def _chat_logprobs(value: object, top: int) -> tuple[TokenLogprob, ...] | None:
    """`logprobs.content`: `[{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}]`."""
    content = value.get("content") if isinstance(value, dict) else None
    if not isinstance(content, list):
        return None
    out = []
    for entry in content:
        if not isinstance(entry, dict):
            continue
        token, logprob = entry.get("token"), _number(entry.get("logprob"))
        if not isinstance(token, str) or logprob is None:
            continue
        alternatives = []
        for alt in entry.get("top_logprobs") or ():
            if isinstance(alt, dict) and isinstance(alt.get("token"), str):
                alt_logprob = _number(alt.get("logprob"))
                if alt_logprob is not None:
                    alternatives.append((alt["token"], alt_logprob))
        out.append(TokenLogprob(token, logprob, _most_likely(alternatives, top)))
    return tuple(out)


def _legacy_logprobs(value: object, top: int) -> tuple[TokenLogprob, ...] | None:
    """`/v1/completions`' parallel lists: `tokens`, `token_logprobs`, `top_logprobs` (dicts)."""
    if not isinstance(value, dict):
        return None
    tokens, logprobs = value.get("tokens"), value.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(logprobs, list):
        return None
    tops = value.get("top_logprobs")
    if not isinstance(tops, list):
        tops = []
    out = []
    for position, (token, raw) in enumerate(zip(tokens, logprobs, strict=False)):
        logprob = _number(raw)
        if not isinstance(token, str) or logprob is None:
            continue
        alternatives = tops[position] if position < len(tops) else None
        pairs = [
            (alt, number)
            for alt, alt_logprob in (alternatives.items() if isinstance(alternatives, dict) else ())
            if isinstance(alt, str) and (number := _number(alt_logprob)) is not None
        ]
        out.append(TokenLogprob(token, logprob, _most_likely(pairs, top)))
    return tuple(out)


def _most_likely(pairs: list[tuple[str, float]], top: int) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(pairs, key=lambda pair: -pair[1])[:top])


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


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
