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
from tokenwire.dialects._openai_logprobs import chat_logprobs
from tokenwire.dialects._openai_tools import (
    parse_agent_options,
    parse_tool_calls,
    tool_message,
)
from tokenwire.dialects._wire import TextTemplate, id_tail
from tokenwire.errors import GenerationError, TokenwireError
from tokenwire.events import Event, Finish, Progress, TokenDelta, ToolCallDelta
from tokenwire.interfaces import ErrorBody, Payload
from tokenwire.requests import ChatMessage, GenerationRequest, ToolCall

# "developer" is OpenAI's newer name for the system role (o1 and later).
_ROLES: Mapping[str, str] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
_ROLE_NAMES = "system, developer, user, assistant, tool"
# Reasoning text goes out under both names: vLLM's current `reasoning` (what OpenAI advised for
# chain of thought) and `reasoning_content` (DeepSeek's, older vLLM's; LangChain and others
# read it). See docs/dialects-and-transports.md.
_REASONING_FIELDS = ("reasoning", "reasoning_content")


class OpenAIChatDialect:
    """The OpenAI Chat Completions API: text content, tools, structured output, logprobs and
    reasoning; one choice per request."""

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
            **parse_agent_options(body).request_fields(),
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
    messages: list[ChatMessage] = []
    for field, message in v.objects(value, "messages", non_empty=True):
        role = v.as_str(v.require(message, "role", f"{field}."), f"{field}.role")
        mapped = _ROLES.get(role)
        if mapped is None:
            raise v.invalid(f"{field}.role", f"expected one of {_ROLE_NAMES}")
        content = message.get("content")
        # An assistant turn may carry null content (it held only tool calls).
        if content is None and mapped == "assistant":
            content = ""
        text = v.joined_text(content, f"{field}.content")
        if mapped == "tool":
            messages.append(tool_message(message, field, text, tuple(messages)))
            continue
        calls: tuple[ToolCall, ...] = ()
        if mapped == "assistant" and message.get("tool_calls") is not None:
            calls = parse_tool_calls(message["tool_calls"], f"{field}.tool_calls")
        messages.append(ChatMessage(mapped, text, tool_calls=calls))
    return tuple(messages)


def _choice(
    delta: Mapping[str, Any], reason: str | None = None, logprobs: Any = None
) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}


def _call_delta(event: ToolCallDelta) -> dict[str, Any]:
    """A call's first delta names it (`id`, `type`, `name`); the later ones add arguments."""
    if event.id is None and event.name is None:
        return {"index": event.index, "function": {"arguments": event.arguments}}
    function = {"name": event.name or "", "arguments": event.arguments}
    return {"index": event.index, "id": event.id or "", "type": "function", "function": function}


def _named_tool(request: GenerationRequest) -> bool:
    choice = request.tool_choice
    return choice.mode == "required" and len(choice.names) == 1


@dataclass(slots=True)
class OpenAIChatExchange:
    """One chat completion: renders `chat.completion.chunk`s or one `chat.completion`."""

    request: GenerationRequest
    stream: bool
    envelope: ChunkEnvelope
    _delta: TextTemplate | None = None
    _role_pending: bool = False

    def open(self) -> Sequence[Payload]:
        # OpenAI's first chunk announces the role with empty content; a turn that may call
        # tools waits for its first event, as a call's first chunk carries the role with null
        # content (SDK accumulators then leave `content` null, not "").
        if self.request.tools:
            self._role_pending = True
            return []
        return [self._role_chunk()]

    def _role_chunk(self) -> Payload:
        return self.envelope.chunk(_choice({"role": "assistant", "content": ""}))

    def render(self, event: Event) -> Sequence[Payload]:
        if not self._role_pending or isinstance(event, Progress):
            return self._render(event)
        self._role_pending = False
        if isinstance(event, ToolCallDelta) and (event.id or event.name):
            delta = {"role": "assistant", "content": None, "tool_calls": [_call_delta(event)]}
            return [self.envelope.chunk(_choice(delta))]
        if isinstance(event, Finish) and event.reason == "error":
            return self._render(event)
        return [self._role_chunk(), *self._render(event)]

    def _render(self, event: Event) -> Sequence[Payload]:
        if isinstance(event, TokenDelta):
            if event.channel == "reasoning":
                if not event.text:
                    return []
                delta = dict.fromkeys(_REASONING_FIELDS, event.text)
                return [self.envelope.chunk(_choice(delta, logprobs=self._logprobs(event)))]
            if event.logprobs is not None and self.request.logprobs:
                delta = {"content": event.text}
                return [self.envelope.chunk(_choice(delta, logprobs=self._logprobs(event)))]
            if not event.text:
                return []
            if self._delta is None:
                envelope = self.envelope
                self._delta = TextTemplate(lambda text: envelope.chunk(_choice({"content": text})))
            return [self._delta.render(event.text)]
        if isinstance(event, ToolCallDelta):
            if event.id is None and event.name is None and not event.arguments:
                return []
            return [self.envelope.chunk(_choice({"tool_calls": [_call_delta(event)]}))]
        if not isinstance(event, Finish):
            return []  # Progress notes are for middlewares; they have no wire form.
        if event.reason == "error":
            return self.fail(GenerationError("The generation failed."))
        reason = finish_reason(event, named_tool=_named_tool(self.request))
        return self.envelope.closing(_choice({}, reason), event.usage)

    def _logprobs(self, event: TokenDelta) -> dict[str, Any] | None:
        # Only a request that asked gets them ("logprobs": null otherwise, as OpenAI sends).
        if event.logprobs is None or not self.request.logprobs:
            return None
        return chat_logprobs(event.logprobs)

    def identity(self) -> Mapping[str, str]:
        return self.envelope.identity()

    def restore_identity(self, identity: Mapping[str, str]) -> None:
        self.envelope.restore_identity(identity)

    def fail(self, error: TokenwireError) -> Sequence[Payload]:
        return self.envelope.failure(error)

    def respond(self, completion: Completion) -> Mapping[str, Any]:
        finish = completion.finish
        envelope = self.envelope
        message: dict[str, Any] = {
            "role": "assistant",
            # null, not "", when the turn is only tool calls, as OpenAI answers.
            "content": completion.text or (None if completion.tool_calls else ""),
            "refusal": None,
        }
        if completion.reasoning:
            message.update(dict.fromkeys(_REASONING_FIELDS, completion.reasoning))
        if completion.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in completion.tool_calls
            ]
        logprobs = None
        if completion.logprobs is not None and self.request.logprobs:
            logprobs = chat_logprobs(completion.logprobs)
        return {
            "id": envelope.id,
            "object": "chat.completion",
            "created": envelope.created,
            "model": envelope.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": logprobs,
                    "finish_reason": finish_reason(finish, named_tool=_named_tool(self.request)),
                }
            ],
            "usage": usage_object(finish.usage),
        }
