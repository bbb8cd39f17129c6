"""Gemini `models/{model}:generateContent` and `:streamGenerateContent` (REST, v1 and v1beta).

Bodies follow protobuf JSON, which accepts both lowerCamelCase and snake_case field names;
google-genai sends camelCase, so errors name fields that way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenwire.completion import Completion
from tokenwire.dialects import _validate as v
from tokenwire.dialects._agent import AgentFields
from tokenwire.dialects._gemini_config import parse_agent_config
from tokenwire.dialects._gemini_parts import content_text, get, parse_contents
from tokenwire.dialects._wire import id_tail, payload
from tokenwire.errors import GenerationError, NotFoundError, TokenwireError
from tokenwire.events import Event, Finish, TokenDelta, ToolCallDelta, Usage
from tokenwire.interfaces import ErrorBody, Payload
from tokenwire.requests import ChatMessage, GenerationRequest, ToolCall

MAX_STOP_SEQUENCES = 5

_ACTIONS: Mapping[str, bool] = {"generateContent": False, "streamGenerateContent": True}

_STATUSES: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class GeminiDialect:
    """The Gemini API's content generation: text, thought and function-call parts, one
    candidate."""

    name: str = "gemini"
    # google-genai calls /v1 unless asked for another API version.
    routes: Sequence[str] = ("/v1beta/models/{target:path}", "/v1/models/{target:path}")
    # Matched before `routes`, which would take these paths too.
    count_routes: Sequence[str] = (
        "/v1beta/models/{model:path}:countTokens",
        "/v1/models/{model:path}:countTokens",
    )
    # google-genai parses every SSE line that is not `data: ` as JSON: no ids, events or
    # comments may reach it.
    sse_fields: bool = False
    keepalive: Payload | None = None

    def parse(
        self, body: Any, path_params: Mapping[str, str], request_id: str, model_id: str
    ) -> GeminiExchange:
        """Validate a generateContent request; the path names the model and the action.

        Raises:
            InvalidRequestError: a field is missing, of the wrong type or out of range.
            NotFoundError: the path names another model or an unknown action.
        """
        model, stream = _parse_target(path_params.get("target", ""))
        v.check_model(model, model_id)
        request, include_thoughts = _parse_body(body, model, request_id)
        return GeminiExchange(request, stream, id_tail(request_id), include_thoughts)

    def parse_count(
        self, body: Any, path_params: Mapping[str, str], request_id: str, model_id: str
    ) -> GenerationRequest:
        """Validate a countTokens request: `contents` and whatever else a generateContent
        body may say of the prompt (`systemInstruction`, `tools`), validated alike.

        Raises:
            InvalidRequestError: a field is missing, of the wrong type or out of range.
            NotFoundError: the path names another model.
        """
        model = path_params.get("model", "").removeprefix("models/")
        v.check_model(model, model_id)
        return _parse_body(body, model, request_id)[0]

    def render_count(self, tokens: int) -> Mapping[str, Any]:
        return {
            "totalTokens": tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
        }

    def render_error(self, error: TokenwireError) -> ErrorBody:
        return ErrorBody(error.status_code, _error_document(error), {})


def _parse_target(target: str) -> tuple[str, bool]:
    """`model:action` → (model, stream). Model ids may hold ':' and '/', so split on the last
    ':'; a leading `models/` (the resource name form) is tolerated."""
    model, colon, action = target.rpartition(":")
    model = model.removeprefix("models/")
    if not colon or not model or action not in _ACTIONS:
        raise NotFoundError(
            "Unknown method: the path must end in models/{model}:generateContent "
            "or models/{model}:streamGenerateContent.",
            param="path",
        )
    return model, _ACTIONS[action]


def _parse_body(body: Any, model: str, request_id: str) -> tuple[GenerationRequest, bool]:
    """A generateContent body (or a countTokens one) as the request it asks for, and whether
    its response shows the thoughts."""
    body = v.as_object(body, "body")
    messages = parse_contents(v.require(body, "contents"))
    system = get(body, "systemInstruction", "system_instruction")
    if system is not None:
        text = system if isinstance(system, str) else content_text(system, "systemInstruction")
        messages = (ChatMessage("system", text), *messages)
    config = get(body, "generationConfig", "generation_config")
    config = {} if config is None else v.as_object(config, "generationConfig")
    agent, include_thoughts = parse_agent_config(body, config)
    request = _build_request(config, agent, model=model, messages=messages, request_id=request_id)
    return request, include_thoughts


def _build_request(
    config: Mapping[str, Any],
    agent: AgentFields,
    *,
    model: str,
    messages: tuple[ChatMessage, ...],
    request_id: str,
) -> GenerationRequest:
    prefix = "generationConfig."
    candidates = get(config, "candidateCount", "candidate_count")
    if candidates is not None and (
        isinstance(candidates, bool) or not isinstance(candidates, int | float) or candidates != 1
    ):
        raise v.invalid(
            f"{prefix}candidateCount", "only 1 is supported (one candidate per request)"
        )
    # Read each field under whichever spelling the client used, validated under the camel one.
    fields = {
        name: get(config, name, snake)
        for name, snake in (
            ("maxOutputTokens", "max_output_tokens"),
            ("temperature", "temperature"),
            ("topP", "top_p"),
            ("topK", "top_k"),
            ("seed", "seed"),
            ("stopSequences", "stop_sequences"),
        )
    }
    max_tokens = v.optional_int(
        fields,
        "maxOutputTokens",
        minimum=1,
        maximum=v.MAX_TOKENS_LIMIT,
        prefix=prefix,
        integral_floats=True,
    )
    temperature = v.optional_number(fields, "temperature", minimum=0, maximum=2, prefix=prefix)
    top_p = v.optional_number(
        fields, "topP", minimum=0, maximum=1, exclusive_minimum=True, prefix=prefix
    )
    # google-genai types topK as a float: 40.0 must read as 40.
    top_k = v.optional_int(
        fields, "topK", minimum=0, maximum=v.MAX_TOKENS_LIMIT, prefix=prefix, integral_floats=True
    )
    return GenerationRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=v.seed(fields, prefix=prefix),
        stop=v.stop_sequences(
            fields["stopSequences"],
            f"{prefix}stopSequences",
            max_count=MAX_STOP_SEQUENCES,
            allow_string=False,
        ),
        request_id=request_id,
        **agent.request_fields(),
    )


def _error_document(error: TokenwireError) -> dict[str, Any]:
    status = error.status_code
    name = _STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": error.message, "status": name}}


def _finish_reason(finish: Finish) -> str:
    if finish.reason == "error":
        raise GenerationError("The generation failed.")
    # A cancelled stream ends as "STOP", as the other dialects end it as a plain stop; so
    # does a turn that called functions, as the API ends it.
    return "MAX_TOKENS" if finish.reason == "length" else "STOP"


def _usage_metadata(usage: Usage) -> dict[str, int]:
    metadata = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": usage.completion_tokens,
        "totalTokenCount": usage.total_tokens,
    }
    if usage.cached_prompt_tokens > 0:
        # Like OpenAI's cached_tokens, a part of promptTokenCount, not in addition to it.
        metadata["cachedContentTokenCount"] = usage.cached_prompt_tokens
    return metadata


def _function_call(call: ToolCall) -> dict[str, Any]:
    """A whole call as a `functionCall` part: Gemini sends calls whole, never in pieces."""
    try:
        args = json.loads(call.arguments or "{}")
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise GenerationError(
            f"The model's call of '{call.name}' has arguments that are not a JSON object."
        )
    function_call: dict[str, Any] = {"name": call.name, "args": args}
    if call.id:
        function_call["id"] = call.id
    return {"functionCall": function_call}


@dataclass(slots=True)
class GeminiExchange:
    """One generation: renders `GenerateContentResponse`s, streamed or whole.

    Reasoning is sent as `thought` parts only when `thinkingConfig.includeThoughts` asked for
    it, as the API does.
    """

    request: GenerationRequest
    stream: bool
    response_id: str
    include_thoughts: bool = False
    # The tool call being gathered: [id, name, argument fragments...].
    _call: list[str] | None = field(default=None, init=False)
    _call_index: int = field(default=-1, init=False)

    def _response(
        self, parts: list[dict[str, Any]], finish: Finish | None = None
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
        if finish is not None:
            candidate["finishReason"] = _finish_reason(finish)
        candidate["index"] = 0
        document: dict[str, Any] = {"candidates": [candidate]}
        if finish is not None:
            document["usageMetadata"] = _usage_metadata(finish.usage)
        document["modelVersion"] = self.request.model
        document["responseId"] = self.response_id
        return document

    def open(self) -> Sequence[Payload]:
        return []

    def _flush_call(self) -> list[dict[str, Any]]:
        """The gathered call as a part (none if no call is being gathered)."""
        if self._call is None:
            return []
        call_id, name, *fragments = self._call
        self._call = None
        return [_function_call(ToolCall(call_id, name, "".join(fragments)))]

    def _gather(self, event: ToolCallDelta) -> list[Payload]:
        done: list[dict[str, Any]] = []
        if self._call is None or event.index != self._call_index:
            done = self._flush_call()
            self._call, self._call_index = ["", ""], event.index
        call = self._call
        if event.id is not None:
            call[0] = event.id
        if event.name is not None:
            call[1] = event.name
        call.append(event.arguments)
        return [payload(self._response(done))] if done else []

    def render(self, event: Event) -> Sequence[Payload]:
        if isinstance(event, ToolCallDelta):
            return self._gather(event)
        if isinstance(event, TokenDelta):
            if not event.text or (event.channel == "reasoning" and not self.include_thoughts):
                return []
            part: dict[str, Any] = {"text": event.text}
            if event.channel == "reasoning":
                part["thought"] = True
            done = self._flush_call()
            return [payload(self._response([*done, part]))]
        if not isinstance(event, Finish):
            return []  # Progress notes are for middlewares; they have no wire form.
        if event.reason == "error":
            return self.fail(GenerationError("The generation failed."))
        # An empty text part, not none, when no call ends the turn: google-genai's `.text` is
        # None for a chunk without parts, which breaks `"".join(chunk.text for chunk in ...)`.
        return [payload(self._response(self._flush_call() or [{"text": ""}], event))]

    def fail(self, error: TokenwireError) -> Sequence[Payload]:
        # google-genai raises APIError on a streamed chunk that starts with {"error":.
        return [payload(_error_document(error))]

    def respond(self, completion: Completion) -> Mapping[str, Any]:
        parts: list[dict[str, Any]] = []
        if completion.reasoning and self.include_thoughts:
            parts.append({"text": completion.reasoning, "thought": True})
        if completion.text or not completion.tool_calls:
            parts.append({"text": completion.text})
        parts.extend(_function_call(call) for call in completion.tool_calls)
        return self._response(parts, completion.finish)
