"""Anthropic Messages (`POST /v1/messages`): `message` and its stream of typed events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenwire.completion import Completion
from tokenwire.dialects import _validate as v
from tokenwire.dialects._wire import id_tail, payload
from tokenwire.errors import GenerationError, TokenwireError
from tokenwire.events import Event, Finish, TokenDelta, Usage
from tokenwire.interfaces import ErrorBody, Payload
from tokenwire.requests import ChatMessage, GenerationRequest

MAX_STOP_SEQUENCES = 64
"""The API sets no documented limit; this one only bounds the work a request can ask for."""

_ROLES = ("user", "assistant")

_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


class AnthropicDialect:
    """The Anthropic Messages API; text blocks only."""

    name: str = "anthropic"
    routes: Sequence[str] = ("/v1/messages",)
    sse_fields: bool = True
    keepalive: Payload | None = Payload('{"type": "ping"}', event="ping")

    def parse(
        self, body: Any, path_params: Mapping[str, str], request_id: str, model_id: str
    ) -> AnthropicExchange:
        """Validate a Messages request.

        Raises:
            InvalidRequestError: a field is missing, of the wrong type or out of range.
            NotFoundError: the body names a model other than `model_id`.
        """
        body = v.as_object(body, "body")
        model = v.as_str(v.require(body, "model"), "model")
        v.check_model(model, model_id)
        # Required by this API, unlike OpenAI's.
        v.require(body, "max_tokens")
        max_tokens = v.max_tokens(body, "max_tokens")
        messages = _parse_messages(v.require(body, "messages"))
        system = body.get("system")
        if system is not None:
            messages = (ChatMessage("system", _text(system, "system")), *messages)
        temperature = v.optional_number(body, "temperature", minimum=0, maximum=1)
        top_p = v.optional_number(body, "top_p", minimum=0, maximum=1, exclusive_minimum=True)
        top_k = v.optional_int(body, "top_k", minimum=0, maximum=v.MAX_TOKENS_LIMIT)
        stop = v.stop_sequences(
            body.get("stop_sequences"),
            "stop_sequences",
            max_count=MAX_STOP_SEQUENCES,
            allow_string=False,
        )
        request = GenerationRequest(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            stop=stop,
            request_id=request_id,
        )
        stream = bool(v.optional_bool(body, "stream"))
        return AnthropicExchange(request, stream, f"msg_{id_tail(request_id)}")

    def render_error(self, error: TokenwireError) -> ErrorBody:
        return ErrorBody(error.status_code, _error_document(error), {})


def _parse_messages(value: Any) -> tuple[ChatMessage, ...]:
    items = v.as_list(value, "messages", non_empty=True)
    messages: list[ChatMessage] = []
    for index, item in enumerate(items):
        field = f"messages[{index}]"
        message = v.as_object(item, field)
        role = v.as_str(v.require(message, "role", f"{field}."), f"{field}.role")
        if role not in _ROLES:
            raise v.invalid(f"{field}.role", "expected one of user, assistant")
        content = _text(v.require(message, "content", f"{field}."), f"{field}.content")
        messages.append(ChatMessage(role, content))
    return tuple(messages)


def _text(content: Any, field: str) -> str:
    """A string, or an array of `{"type": "text", "text": ...}` blocks joined together."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise v.invalid(field, "expected a string or an array of text blocks")
    texts: list[str] = []
    for index, item in enumerate(content):
        block = v.as_object(item, f"{field}[{index}]")
        if block.get("type") != "text":
            raise v.invalid(f"{field}[{index}].type", "only text blocks are supported")
        texts.append(
            v.as_str(v.require(block, "text", f"{field}[{index}]."), f"{field}[{index}].text")
        )
    return "".join(texts)


def _error_document(error: TokenwireError) -> dict[str, Any]:
    status = error.status_code
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def _stop_reason(finish: Finish) -> str:
    if finish.reason == "error":
        raise GenerationError("The generation failed.")
    if finish.reason == "length":
        return "max_tokens"
    if finish.stop_sequence is not None:
        return "stop_sequence"
    # A cancelled stream ends as "end_turn": the API has no reason for a cut-short turn.
    return "end_turn"


def _stop_sequence(finish: Finish, reason: str) -> str | None:
    return finish.stop_sequence if reason == "stop_sequence" else None


def _usage(usage: Usage) -> dict[str, int]:
    # Anthropic's input_tokens excludes cache reads (total = input + cache_read + creation).
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": usage.cached_prompt_tokens,
    }


@dataclass(slots=True)
class AnthropicExchange:
    """One message: renders the Messages stream events, or one whole `message`."""

    request: GenerationRequest
    stream: bool
    id: str

    def open(self) -> Sequence[Payload]:
        # Usage is known only at the Finish, so message_start carries zeros and the
        # message_delta carries the real counts: the SDK's accumulator takes input_tokens
        # and cache_read_input_tokens from message_delta when present.
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.request.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [
            payload({"type": "message_start", "message": message}, "message_start"),
            payload(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            payload({"type": "ping"}, "ping"),
        ]

    def render(self, event: Event) -> Sequence[Payload]:
        if isinstance(event, TokenDelta):
            if not event.text:
                return []
            text_delta = {"type": "text_delta", "text": event.text}
            return [
                payload(
                    {"type": "content_block_delta", "index": 0, "delta": text_delta},
                    "content_block_delta",
                )
            ]
        if not isinstance(event, Finish):
            return []  # Progress notes are for middlewares; they have no wire form.
        if event.reason == "error":
            return self.fail(GenerationError("The generation failed."))
        reason = _stop_reason(event)
        delta: dict[str, Any] = {
            "stop_reason": reason,
            "stop_sequence": _stop_sequence(event, reason),
        }
        return [
            payload({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            payload(
                {"type": "message_delta", "delta": delta, "usage": _usage(event.usage)},
                "message_delta",
            ),
            payload({"type": "message_stop"}, "message_stop"),
        ]

    def fail(self, error: TokenwireError) -> Sequence[Payload]:
        # The SDK raises on an `error` event, whatever came before it.
        return [payload(_error_document(error), "error")]

    def respond(self, completion: Completion) -> Mapping[str, Any]:
        text, finish = completion.text, completion.finish
        reason = _stop_reason(finish)
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.request.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": reason,
            "stop_sequence": _stop_sequence(finish, reason),
            "usage": _usage(finish.usage),
        }
