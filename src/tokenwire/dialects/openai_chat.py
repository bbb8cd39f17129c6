"""OpenAI Chat Completions (`POST /v1/chat/completions`): `chat.completion(.chunk)` shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenwire.completion import Completion
from tokenwire.dialects import _validate as v
from tokenwire.dialects._openai_common import (
    ChunkEnvelope,
    finish_reason,
    parse_options,
    render_error,
    usage_object,
)
from tokenwire.dialects._wire import TextTemplate, id_tail
from tokenwire.errors import GenerationError, TokenwireError
from tokenwire.events import Event, Finish, TokenDelta
from tokenwire.interfaces import ErrorBody, Payload
from tokenwire.requests import ChatMessage, GenerationRequest

# "developer" is OpenAI's newer name for the system role (o1 and later).
_ROLES: Mapping[str, str] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
_ROLE_NAMES = "system, developer, user, assistant"


class OpenAIChatDialect:
    """The OpenAI Chat Completions API; text content only, one choice per request."""

    name: str = "openai-chat"
    routes: Sequence[str] = ("/v1/chat/completions",)
    sse_fields: bool = True
    keepalive: Payload | None = None

    def parse(
        self, body: Any, path_params: Mapping[str, str], request_id: str, model_id: str
    ) -> OpenAIChatExchange:
        """Validate a chat completion request.

        Raises:
            InvalidRequestError: a field is missing, of the wrong type or out of range.
            NotFoundError: the body names a model other than `model_id`.
        """
        body = v.as_object(body, "body")
        # `max_completion_tokens` superseded `max_tokens`; when both are sent it wins.
        newer = v.max_tokens(body, "max_completion_tokens")
        older = v.max_tokens(body, "max_tokens")
        options = parse_options(body, model_id, max_tokens=newer if newer is not None else older)
        messages = parse_messages(v.require(body, "messages"))
        request = GenerationRequest(
            model=options.model,
            messages=messages,
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            seed=options.seed,
            stop=options.stop,
            request_id=request_id,
        )
        envelope = ChunkEnvelope(
            id=f"chatcmpl-{id_tail(request_id)}",
            object="chat.completion.chunk",
            model=options.model,
            include_usage=options.include_usage,
        )
        return OpenAIChatExchange(request, options.stream, envelope)

    def render_error(self, error: TokenwireError) -> ErrorBody:
        return render_error(error)


def parse_messages(value: Any) -> tuple[ChatMessage, ...]:
    items = v.as_list(value, "messages", non_empty=True)
    messages: list[ChatMessage] = []
    for index, item in enumerate(items):
        field = f"messages[{index}]"
        message = v.as_object(item, field)
        role = v.as_str(v.require(message, "role", f"{field}."), f"{field}.role")
        mapped = _ROLES.get(role)
        if mapped is None:
            raise v.invalid(f"{field}.role", f"expected one of {_ROLE_NAMES}")
        content = message.get("content")
        # An assistant turn may carry null content (it held only tool calls).
        if content is None and mapped == "assistant":
            content = ""
        messages.append(ChatMessage(mapped, _content_text(content, f"{field}.content")))
    return tuple(messages)


def _content_text(content: Any, field: str) -> str:
    """A string, or an array of `{"type": "text", "text": ...}` parts joined together."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise v.invalid(field, "expected a string or an array of text parts")
    texts: list[str] = []
    for index, item in enumerate(content):
        part = v.as_object(item, f"{field}[{index}]")
        if part.get("type") != "text":
            raise v.invalid(f"{field}[{index}].type", "only text parts are supported")
        texts.append(
            v.as_str(v.require(part, "text", f"{field}[{index}]."), f"{field}[{index}].text")
        )
    return "".join(texts)


def _choice(delta: Mapping[str, Any], reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}


@dataclass(slots=True)
class OpenAIChatExchange:
    """One chat completion: renders `chat.completion.chunk`s or one `chat.completion`."""

    request: GenerationRequest
    stream: bool
    envelope: ChunkEnvelope
    _delta: TextTemplate | None = None

    def open(self) -> Sequence[Payload]:
        # OpenAI's first chunk announces the role with empty content.
        return [self.envelope.chunk(_choice({"role": "assistant", "content": ""}))]

    def render(self, event: Event) -> Sequence[Payload]:
        if isinstance(event, TokenDelta):
            if not event.text:
                return []
            if self._delta is None:
                envelope = self.envelope
                self._delta = TextTemplate(lambda text: envelope.chunk(_choice({"content": text})))
            return [self._delta.render(event.text)]
        if not isinstance(event, Finish):
            return []  # Progress notes are for middlewares; they have no wire form.
        if event.reason == "error":
            return self.fail(GenerationError("The generation failed."))
        return self.envelope.closing(_choice({}, finish_reason(event)), event.usage)

    def fail(self, error: TokenwireError) -> Sequence[Payload]:
        return self.envelope.failure(error)

    def respond(self, completion: Completion) -> Mapping[str, Any]:
        text, finish = completion.text, completion.finish
        envelope = self.envelope
        return {
            "id": envelope.id,
            "object": "chat.completion",
            "created": envelope.created,
            "model": envelope.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason(finish),
                }
            ],
            "usage": usage_object(finish.usage),
        }
