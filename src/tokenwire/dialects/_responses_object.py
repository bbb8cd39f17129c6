"""The Responses API's `response` object and its output items, usage and logprobs.

One `ResponseHead` per response holds what every copy of the object repeats (id, model, the
request's settings echoed back); `response_object` dresses it with a status and the output.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenwire.errors import RateLimitError, TokenwireError
from tokenwire.events import Usage
from tokenwire.requests import GenerationRequest, Tool, ToolChoice


@dataclass(slots=True)
class ResponseHead:
    """The fields of one response that do not change while it streams."""

    id: str
    model: str
    request: GenerationRequest
    instructions: str | None = None
    metadata: Mapping[str, str] | None = None
    store: bool = True
    text_format: Mapping[str, Any] = field(default_factory=lambda: {"type": "text"})
    reasoning_effort: str | None = None
    max_output_tokens: int | None = None
    background: bool = False
    previous_response_id: str | None = None
    created_at: int = 0

    def __post_init__(self) -> None:
        self.created_at = int(time.time())


def response_object(
    head: ResponseHead,
    status: str,
    output: Sequence[Mapping[str, Any]],
    *,
    usage: Mapping[str, Any] | None = None,
    error: Mapping[str, Any] | None = None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """The `response` object, as `response.created` (`output: []`) through `response.completed`."""
    request = head.request
    return {
        "id": head.id,
        "object": "response",
        "created_at": head.created_at,
        "status": status,
        "background": head.background,
        "error": error,
        "incomplete_details": (
            None if incomplete_reason is None else {"reason": incomplete_reason}
        ),
        "instructions": head.instructions,
        "max_output_tokens": head.max_output_tokens,
        "max_tool_calls": None,
        "model": head.model,
        "output": list(output),
        "parallel_tool_calls": request.parallel_tool_calls,
        "previous_response_id": head.previous_response_id,
        "reasoning": {"effort": head.reasoning_effort, "summary": None},
        "store": head.store,
        "temperature": request.temperature,
        "text": {"format": dict(head.text_format)},
        "tool_choice": _tool_choice(request.tool_choice),
        "tools": [_tool(tool) for tool in request.tools],
        "top_logprobs": request.top_logprobs,
        "top_p": request.top_p,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": dict(head.metadata or {}),
    }


def _tool(tool: Tool) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description or None,
        "parameters": dict(tool.parameters),
        "strict": tool.strict,
    }


def _tool_choice(choice: ToolChoice) -> str | dict[str, str]:
    if choice.mode == "required" and len(choice.names) == 1:
        return {"type": "function", "name": choice.names[0]}
    return choice.mode


def usage_object(usage: Usage, reasoning_tokens: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_prompt_tokens,
            "cache_write_tokens": 0,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def error_object(error: TokenwireError) -> dict[str, Any]:
    """A failed response's `error`: the API's codes for a failure mid-stream are few, and a
    rate limit is the only one of ours with its own."""
    code = "rate_limit_exceeded" if isinstance(error, RateLimitError) else "server_error"
    return {"code": code, "message": error.message}


def output_text(text: str, logprobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def message_item(item_id: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": status,
        "content": content,
    }


def reasoning_item(item_id: str, status: str, text: str | None) -> dict[str, Any]:
    """A reasoning item: its text as one `reasoning_text` content part (vLLM's form; the
    API's own models send summaries instead), no summary."""
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"type": "reasoning", "id": item_id, "status": status, "summary": [], "content": content}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }
