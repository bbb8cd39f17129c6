"""Anthropic Messages (`POST /v1/messages`): `message` and its stream of typed events.

A stream's content blocks come in the order the model produced them: thinking (reasoning),
text, then one `tool_use` block per tool call, each at its own index.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tokenwire.completion import Completion
from tokenwire.dialects import _validate as v
from tokenwire.dialects._anthropic_blocks import parse_agent_fields, parse_messages
from tokenwire.dialects._wire import id_tail, payload
from tokenwire.errors import GenerationError, TokenwireError
from tokenwire.events import Event, Finish, Progress, TokenDelta, ToolCallDelta, Usage
from tokenwire.interfaces import ErrorBody, Payload
from tokenwire.requests import ChatMessage, GenerationRequest, ToolCall

MAX_STOP_SEQUENCES = 64
"""The API sets no documented limit; this one only bounds the work a request can ask for."""

THINKING_SIGNATURE = ""
"""What stands for a thinking block's signature: the API signs its thinking so that it can be
sent back unaltered; this server neither signs nor checks it, and the SDK takes an empty one."""

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
    """The Anthropic Messages API: text, thinking and custom tool-use blocks."""

    name: str = "anthropic"
    routes: Sequence[str] = ("/v1/messages",)
    count_routes: Sequence[str] = ("/v1/messages/count_tokens",)
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
        request = self.parse_count(body, path_params, request_id, model_id)
        # Required by this API, unlike OpenAI's.
        v.require(body, "max_tokens")
        max_tokens = v.max_tokens(body, "max_tokens")
        temperature = v.optional_number(body, "temperature", minimum=0, maximum=1)
        top_p = v.optional_number(body, "top_p", minimum=0, maximum=1, exclusive_minimum=True)
        top_k = v.optional_int(body, "top_k", minimum=0, maximum=v.MAX_TOKENS_LIMIT)
        stop = v.stop_sequences(
            body.get("stop_sequences"),
            "stop_sequences",
            max_count=MAX_STOP_SEQUENCES,
            allow_string=False,
        )
        request = replace(
            request,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            stop=stop,
        )
        stream = bool(v.optional_bool(body, "stream"))
        return AnthropicExchange(request, stream, f"msg_{id_tail(request_id)}")

    def parse_count(
        self, body: Any, path_params: Mapping[str, str], request_id: str, model_id: str
    ) -> GenerationRequest:
        """Validate what a Messages request (or a token count) says of the prompt: the
        model, the messages, the system prompt, the tools and the other agent fields.

        Raises:
            InvalidRequestError: a field is missing, of the wrong type or out of range.
            NotFoundError: the body names a model other than `model_id`.
        """
        body = v.as_object(body, "body")
        model = v.as_str(v.require(body, "model"), "model")
        v.check_model(model, model_id)
        messages = parse_messages(v.require(body, "messages"))
        system = body.get("system")
        if system is not None:
            messages = (
                ChatMessage("system", v.joined_text(system, "system", noun="blocks")),
                *messages,
            )
        return GenerationRequest(
            model=model,
            messages=messages,
            request_id=request_id,
            **parse_agent_fields(body).request_fields(),
        )

    def render_count(self, tokens: int) -> Mapping[str, Any]:
        return {"input_tokens": tokens}

    def render_error(self, error: TokenwireError) -> ErrorBody:
        return ErrorBody(error.status_code, _error_document(error), {})


def _error_document(error: TokenwireError) -> dict[str, Any]:
    status = error.status_code
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def _stop_reason(finish: Finish) -> str:
    if finish.reason == "error":
        raise GenerationError("The generation failed.")
    if finish.reason == "length":
        return "max_tokens"
    if finish.reason == "tool_calls":
        return "tool_use"
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


def _tool_input(call: ToolCall) -> Any:
    """A call's arguments as the object `tool_use.input` holds."""
    try:
        arguments = json.loads(call.arguments)
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise GenerationError(
            f"The model's call of '{call.name}' has arguments that are not a JSON object."
        )
    return arguments


def _content(completion: Completion) -> list[dict[str, Any]]:
    """A whole message's blocks: thinking, then text, then the tool calls."""
    blocks: list[dict[str, Any]] = []
    if completion.reasoning:
        blocks.append(
            {"type": "thinking", "thinking": completion.reasoning, "signature": THINKING_SIGNATURE}
        )
    # The text block stays when empty unless tool calls follow, as the API answers.
    if completion.text or not completion.tool_calls:
        blocks.append({"type": "text", "text": completion.text})
    for call in completion.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call)}
        )
    return blocks


def _block_event(kind: str, index: int, **fields: Any) -> Payload:
    return payload({"type": kind, "index": index, **fields}, kind)


@dataclass(slots=True)
class AnthropicExchange:
    """One message: renders the Messages stream events, or one whole `message`."""

    request: GenerationRequest
    stream: bool
    id: str
    # The open content block: its kind ("text", "thinking", "tool_use") and index, and the
    # tool call it holds; blocks are numbered from 0 in the order they open.
    _block: str | None = field(default=None, init=False)
    _index: int = field(default=-1, init=False)
    _call: int = field(default=-1, init=False)
    # The prompt's counts from the backend's prefill note, for message_start.
    _prompt: Usage = field(default=Usage(), init=False)

    def observe_progress(self, event: Progress) -> None:
        if event.prompt_tokens is not None:
            self._prompt = Usage(event.prompt_tokens, 0, event.cached_prompt_tokens)

    def open(self) -> Sequence[Payload]:
        # The prompt's counts as the backend stated them before the first token (zeros from
        # a backend that does not): the API reports them here, and clients that track their
        # context read them. message_delta repeats them with the output count.
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.request.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(self._prompt),
        }
        return [payload({"type": "message_start", "message": message}, "message_start")]

    def _close(self) -> list[Payload]:
        if self._block is None:
            return []
        closing: list[Payload] = []
        if self._block == "thinking":
            signature = {"type": "signature_delta", "signature": THINKING_SIGNATURE}
            closing.append(_block_event("content_block_delta", self._index, delta=signature))
        closing.append(_block_event("content_block_stop", self._index))
        self._block = None
        return closing

    def _start(self, kind: str, block: dict[str, Any]) -> list[Payload]:
        """Close the open block and open a new one; the API pings after the first."""
        payloads = self._close()
        self._block, self._index = kind, self._index + 1
        payloads.append(_block_event("content_block_start", self._index, content_block=block))
        if self._index == 0:
            payloads.append(payload({"type": "ping"}, "ping"))
        return payloads

    def _text(self, event: TokenDelta) -> list[Payload]:
        if not event.text:
            return []
        payloads: list[Payload] = []
        if event.channel == "reasoning":
            if self._block != "thinking":
                block = {"type": "thinking", "thinking": "", "signature": THINKING_SIGNATURE}
                payloads = self._start("thinking", block)
            delta = {"type": "thinking_delta", "thinking": event.text}
        else:
            if self._block != "text":
                payloads = self._start("text", {"type": "text", "text": ""})
            delta = {"type": "text_delta", "text": event.text}
        payloads.append(_block_event("content_block_delta", self._index, delta=delta))
        return payloads

    def _tool_call(self, event: ToolCallDelta) -> list[Payload]:
        payloads: list[Payload] = []
        if self._block != "tool_use" or event.index != self._call:
            self._call = event.index
            block = {
                "type": "tool_use",
                # The contract puts id and name on a call's first delta; these stand in
                # for a backend that broke it.
                "id": event.id or f"toolu_{id_tail(self.request.request_id)}_{event.index}",
                "name": event.name or "",
                "input": {},
            }
            payloads = self._start("tool_use", block)
        if event.arguments:
            delta = {"type": "input_json_delta", "partial_json": event.arguments}
            payloads.append(_block_event("content_block_delta", self._index, delta=delta))
        return payloads

    def render(self, event: Event) -> Sequence[Payload]:
        if isinstance(event, TokenDelta):
            return self._text(event)
        if isinstance(event, ToolCallDelta):
            return self._tool_call(event)
        if not isinstance(event, Finish):
            return []  # Progress notes are for middlewares; they have no wire form.
        if event.reason == "error":
            return self.fail(GenerationError("The generation failed."))
        reason = _stop_reason(event)
        delta: dict[str, Any] = {
            "stop_reason": reason,
            "stop_sequence": _stop_sequence(event, reason),
        }
        # A message with no content at all still gets its (empty) text block.
        payloads = self._start("text", {"type": "text", "text": ""}) if self._index < 0 else []
        return [
            *payloads,
            *self._close(),
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
        finish = completion.finish
        reason = _stop_reason(finish)
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.request.model,
            "content": _content(completion),
            "stop_reason": reason,
            "stop_sequence": _stop_sequence(finish, reason),
            "usage": _usage(finish.usage),
        }
