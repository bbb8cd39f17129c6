"""Gemini `models/{model}:generateContent` and `:streamGenerateContent` (REST, v1 and v1beta).

Bodies follow protobuf JSON, which accepts both lowerCamelCase and snake_case field names;
google-genai sends camelCase, so errors name fields that way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenwire.completion import Completion
from tokenwire.dialects import _validate as v
from tokenwire.dialects._wire import id_tail, payload
from tokenwire.errors import GenerationError, NotFoundError, TokenwireError
from tokenwire.events import Event, Finish, TokenDelta, Usage
from tokenwire.interfaces import ErrorBody, Payload
from tokenwire.requests import ChatMessage, GenerationRequest

MAX_STOP_SEQUENCES = 5

_ACTIONS: Mapping[str, bool] = {"generateContent": False, "streamGenerateContent": True}
_ROLES: Mapping[str, str] = {"user": "user", "model": "assistant"}

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
    """The Gemini API's content generation; text parts only, one candidate."""

    name: str = "gemini"
    # google-genai calls /v1 unless asked for another API version.
    routes: Sequence[str] = ("/v1beta/models/{target:path}", "/v1/models/{target:path}")
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
        body = v.as_object(body, "body")
        messages = _parse_contents(v.require(body, "contents"))
        system = _get(body, "systemInstruction", "system_instruction")
        if system is not None:
            text = system if isinstance(system, str) else _content_text(system, "systemInstruction")
            messages = (ChatMessage("system", text), *messages)
        config = _get(body, "generationConfig", "generation_config")
        request = _build_request(
            {} if config is None else v.as_object(config, "generationConfig"),
            model=model,
            messages=messages,
            request_id=request_id,
        )
        return GeminiExchange(request, stream, id_tail(request_id))

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


def _get(body: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = body.get(camel)
    return body.get(snake) if value is None else value


def _parse_contents(value: Any) -> tuple[ChatMessage, ...]:
    items = v.as_list(value, "contents", non_empty=True)
    messages: list[ChatMessage] = []
    for index, item in enumerate(items):
        field = f"contents[{index}]"
        content = v.as_object(item, field)
        # The role may be left unset in single-turn requests; it then means the user.
        role = v.optional_str(content, "role", f"{field}.") or "user"
        mapped = _ROLES.get(role)
        if mapped is None:
            raise v.invalid(f"{field}.role", "expected one of user, model")
        messages.append(ChatMessage(mapped, _content_text(content, field)))
    return tuple(messages)


def _content_text(value: Any, field: str) -> str:
    """The text of a Content's `parts`, joined; parts other than text are refused."""
    content = v.as_object(value, field)
    parts = v.as_list(v.require(content, "parts", f"{field}."), f"{field}.parts")
    texts: list[str] = []
    for index, item in enumerate(parts):
        part_field = f"{field}.parts[{index}]"
        part = v.as_object(item, part_field)
        text = part.get("text")
        if text is None:
            raise v.invalid(part_field, "only text parts are supported")
        texts.append(v.as_str(text, f"{part_field}.text"))
    return "".join(texts)


def _build_request(
    config: Mapping[str, Any], *, model: str, messages: tuple[ChatMessage, ...], request_id: str
) -> GenerationRequest:
    prefix = "generationConfig."
    candidates = _get(config, "candidateCount", "candidate_count")
    if candidates is not None and (
        isinstance(candidates, bool) or not isinstance(candidates, int | float) or candidates != 1
    ):
        raise v.invalid(
            f"{prefix}candidateCount", "only 1 is supported (one candidate per request)"
        )
    # Read each field under whichever spelling the client used, validated under the camel one.
    fields = {
        name: _get(config, name, snake)
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
    )


def _error_document(error: TokenwireError) -> dict[str, Any]:
    status = error.status_code
    name = _STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": error.message, "status": name}}


def _finish_reason(finish: Finish) -> str:
    if finish.reason == "error":
        raise GenerationError("The generation failed.")
    # A cancelled stream ends as "STOP", as the other dialects end it as a plain stop.
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


@dataclass(slots=True)
class GeminiExchange:
    """One generation: renders `GenerateContentResponse`s, streamed or whole."""

    request: GenerationRequest
    stream: bool
    response_id: str

    def _response(self, text: str, finish: Finish | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
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

    def render(self, event: Event) -> Sequence[Payload]:
        if isinstance(event, TokenDelta):
            return [payload(self._response(event.text))] if event.text else []
        if not isinstance(event, Finish):
            return []  # Progress notes are for middlewares; they have no wire form.
        if event.reason == "error":
            return self.fail(GenerationError("The generation failed."))
        # An empty text part, not none: google-genai's `.text` is None for a chunk without
        # parts, which breaks the common `"".join(chunk.text for chunk in stream)`.
        return [payload(self._response("", event))]

    def fail(self, error: TokenwireError) -> Sequence[Payload]:
        # google-genai raises APIError on a streamed chunk that starts with {"error":.
        return [payload(_error_document(error))]

    def respond(self, completion: Completion) -> Mapping[str, Any]:
        return self._response(completion.text, completion.finish)
