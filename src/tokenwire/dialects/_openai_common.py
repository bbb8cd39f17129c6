"""What the OpenAI chat and completions dialects share: sampling options, chunk envelopes,
usage, finish reasons and the error shape."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenwire.dialects import _validate as v
from tokenwire.dialects._wire import payload
from tokenwire.errors import (
    ContextLengthExceededError,
    GenerationError,
    NotFoundError,
    TokenwireError,
)
from tokenwire.events import Finish, FinishReason, Usage
from tokenwire.interfaces import ErrorBody, Payload

DONE = Payload("[DONE]", sentinel=True)
MAX_STOP_SEQUENCES = 4

# A cancelled stream ends as "stop": the API has no reason for it, and the SDKs' Literal
# types reject anything else. An "error" finish is never rendered as a reason (see `fail`).
_FINISH_REASONS: Mapping[FinishReason, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "cancelled": "stop",
}

_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    """The request fields chat and completions share, validated."""

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    seed: int | None
    stop: tuple[str, ...]


def parse_options(
    body: Mapping[str, Any], model_id: str, *, max_tokens: int | None
) -> OpenAIOptions:
    """Validate the shared fields; `max_tokens` is the already-resolved token limit."""
    model = v.as_str(v.require(body, "model"), "model")
    v.check_model(model, model_id)
    require_one(body, "n")
    stream = bool(v.optional_bool(body, "stream"))
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        options = v.as_object(options, "stream_options")
        include_usage = bool(v.optional_bool(options, "include_usage", "stream_options."))
    temperature = v.optional_number(body, "temperature", minimum=0, maximum=2)
    top_p = v.optional_number(body, "top_p", minimum=0, maximum=1, exclusive_minimum=True)
    return OpenAIOptions(
        model=model,
        stream=stream,
        # OpenAI sends the usage chunk only to streams that asked for it.
        include_usage=stream and include_usage,
        max_tokens=max_tokens,
        # None (not 1.0) when omitted: the backend fills in the model's defaults.
        temperature=temperature,
        top_p=top_p,
        seed=v.seed(body),
        stop=v.stop_sequences(
            body.get("stop"), "stop", max_count=MAX_STOP_SEQUENCES, allow_string=True
        ),
    )


def require_one(body: Mapping[str, Any], key: str) -> None:
    """Reject `n`/`best_of` other than 1: this server generates one choice per request."""
    value = body.get(key)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or value != 1
    ):
        raise v.invalid(key, "only 1 is supported (one choice per request)")


def finish_reason(finish: Finish, *, named_tool: bool = False) -> str:
    """OpenAI's reason for `finish`. `named_tool`: the request forced one named function."""
    if finish.reason == "error":
        raise GenerationError("The generation failed.")
    if finish.reason == "tool_calls" and named_tool:
        # OpenAI answers "stop", not "tool_calls", when tool_choice named the function: SDKs
        # and agents written against it expect that. Do not fix.
        return "stop"
    return _FINISH_REASONS[finish.reason]


def usage_object(usage: Usage) -> dict[str, Any]:
    # `prompt_tokens` includes the cached ones in OpenAI's accounting, as in ours.
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
    }


def error_object(error: TokenwireError) -> dict[str, Any]:
    status = error.status_code
    code: str | None = None
    if isinstance(error, ContextLengthExceededError):
        code = "context_length_exceeded"
    elif isinstance(error, NotFoundError) and error.param == "model":
        code = "model_not_found"
    elif status == 429:
        code = "rate_limit_exceeded"
    elif status == 401:
        code = "invalid_api_key"
    return {
        "message": error.message,
        "type": _ERROR_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        ),
        "param": error.param,
        "code": code,
    }


def render_error(error: TokenwireError) -> ErrorBody:
    return ErrorBody(error.status_code, {"error": error_object(error)}, {})


@dataclass(slots=True)
class ChunkEnvelope:
    """The fields every streamed chunk of one response repeats, and its closing sequence."""

    id: str
    object: str
    model: str
    include_usage: bool
    created: int = 0

    def __post_init__(self) -> None:
        # Fixed per response: every chunk of one completion carries the same `created`.
        self.created = int(time.time())

    def identity(self) -> dict[str, str]:
        """What a continuing replica needs to render the same chunks (`KeepsIdentity`)."""
        return {"created": str(self.created)}

    def restore_identity(self, identity: Mapping[str, str]) -> None:
        self.created = int(identity.get("created", self.created))

    def head(self) -> dict[str, Any]:
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.model}

    def chunk(self, choice: Mapping[str, Any]) -> Payload:
        document = {**self.head(), "choices": [choice]}
        if self.include_usage:
            # With include_usage on, OpenAI sends `"usage": null` on every other chunk.
            document["usage"] = None
        return payload(document)

    def closing(self, last_choice: Mapping[str, Any], usage: Usage) -> list[Payload]:
        payloads = [self.chunk(last_choice)]
        if self.include_usage:
            payloads.append(payload({**self.head(), "choices": [], "usage": usage_object(usage)}))
        payloads.append(DONE)
        return payloads

    def failure(self, error: TokenwireError) -> list[Payload]:
        # The openai SDK raises APIError on any payload with a top-level "error" key.
        return [payload({"error": error_object(error)}), DONE]
