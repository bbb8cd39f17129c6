"""The OpenAPI 3.1 document of every HTTP endpoint, and the route that serves it (`/openapi.json`).

Built as plain JSON-ready dicts: request schemas state exactly what each dialect accepts,
responses name each dialect's error shape. WebSocket upgrades on the dialect paths have no
OpenAPI form; they are mentioned in the descriptions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tokenwire._openapi_operations import (
    cancel_operation,
    health_operation,
    json_response,
    model_get_operation,
    models_list_operation,
    resume_operation,
    text_get_operation,
)
from tokenwire._openapi_responses import responses_schemas, stored_response_paths
from tokenwire._openapi_schemas import (
    TIMEOUT,
    Schema,
    anthropic_schemas,
    gemini_schemas,
    openai_schemas,
    ref,
)
from tokenwire.dialects._validate import MAX_TOKENS_LIMIT
from tokenwire.limits import Limits

OPENAPI_VERSION = "3.1.0"
ALL_DIALECTS = ("openai-chat", "openai-completions", "openai-responses", "anthropic", "gemini")

_SSE = "text/event-stream"
_NDJSON = "application/x-ndjson"
_JSON = "application/json"
_STREAM_NOTE = (
    "Streamed calls answer `text/event-stream` by default and `application/x-ndjson` when "
    "the request has `Accept: application/x-ndjson`; a WebSocket upgrade on the same path "
    "streams JSON frames."
)
# Statuses every generation endpoint may answer, in the dialect's own error shape.
_ERRORS = {
    "400": "The body is not JSON, or a field is missing, of the wrong type or out of range.",
    "401": "An API key is required (only when the server has keys).",
    "404": "The request names a model this server does not serve.",
    "413": "The body is larger than the server allows.",
    "429": "Too many concurrent requests for this key, or the queue is full (`Retry-After`).",
    "500": "The backend failed before the first token.",
    "503": "The backend is starting, draining or unhealthy.",
    "504": "The request's own deadline (`timeout`, `x-request-timeout`) passed before the first token.",
}

_POSITIVE_DECIMAL = (
    r"^\+?([0-9]{0,4}[1-9][0-9]{0,4}(\.[0-9]{0,9})?|[0-9]{0,4}\.[0-9]{0,9}[1-9][0-9]{0,9})"
    r"([eE][+-]?([0-9]{1,2}|[12][0-9]{2}))?$"
)
_REQUEST_HEADERS: list[Schema] = [
    {
        "name": "x-request-timeout",
        "in": "header",
        "required": False,
        "description": "Seconds before the request is cut short: a positive decimal number.",
        # A positive decimal (a nonzero digit, an optional exponent); the bounded lengths keep
        # it finite and above zero as a float (float("1e-400") is 0.0, which is refused).
        "schema": {"type": "string", "pattern": _POSITIVE_DECIMAL},
    },
    {
        "name": "x-request-id",
        "in": "header",
        "required": False,
        "description": "Your id for the request (`[A-Za-z0-9._:-]{1,128}`, else one is made); "
        "cancel it with `DELETE /v1/requests/{request_id}`.",
        "schema": {"type": "string"},
    },
]
_REQUEST_ID_HEADER: Schema = {
    "x-request-id": {"description": "The request's id.", "schema": {"type": "string"}}
}


def build_openapi(
    model_id: str,
    *,
    dialects: Iterable[str] = ALL_DIALECTS,
    limits: Limits = Limits(),
    cancellation: bool = True,
    metrics: bool = True,
    playground: bool = True,
    resume: bool = False,
    stored_responses: bool = True,
    api_keys: bool = False,
    server_url: str = "/",
) -> dict[str, Any]:
    """The OpenAPI document for a server of `model_id` with these parts switched on.

    Args:
        model_id: the served model; request schemas admit only this id.
        dialects: names of the served dialects (others have no schema here and are skipped).
        limits: the server's limits; a `max_tokens` cap lowers the documented maximum.
        cancellation: document `DELETE /v1/requests/{request_id}`.
        metrics: document `GET /metrics`.
        playground: document `GET /`.
        resume: document `GET /v1/streams/{request_id}` (resumable streams are on).
        stored_responses: document `/v1/responses/{response_id}` (the response store is on).
        api_keys: the server requires keys; the security schemes are then declared.
        server_url: where the API is served (a mount prefix, or "/").
    """
    names = set(dialects)
    cap = limits.max_tokens if limits.max_tokens is not None else MAX_TOKENS_LIMIT
    schemas: dict[str, Schema] = {
        "Model": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": {"type": "string"},
            },
            "required": ["id", "object", "created", "owned_by"],
        },
        **openai_schemas(model_id, cap),
    }
    paths: dict[str, Any] = {
        "/health/live": {
            "get": health_operation("liveness", "Always 200 while the process serves.")
        },
        "/health/ready": {"get": health_operation("readiness", "200 once the backend is ready.")},
        "/health": {
            "get": health_operation(
                "readiness", "The same as `/health/ready`.", operation_id="health"
            )
        },
        "/v1/models": {"get": models_list_operation()},
        "/v1/models/{model_id}": {"get": model_get_operation()},
    }
    if "openai-chat" in names:
        paths["/v1/chat/completions"] = {
            "post": _generation(
                "createChatCompletion",
                "OpenAI Chat Completions.",
                "ChatCompletionRequest",
                "ChatCompletion",
                "ChatCompletionChunk",
                "OpenAIError",
                tag="openai",
            )
        }
    if "openai-completions" in names:
        paths["/v1/completions"] = {
            "post": _generation(
                "createCompletion",
                "OpenAI legacy Completions (one string prompt).",
                "CompletionRequest",
                "Completion",
                "CompletionChunk",
                "OpenAIError",
                tag="openai",
            )
        }
    if "openai-responses" in names:
        schemas.update(responses_schemas(model_id, cap, TIMEOUT))
        paths["/v1/responses"] = {
            "post": _generation(
                "createResponse",
                "OpenAI Responses (text and function-call items; stored, continued and "
                "background responses when the response store is on).",
                "ResponsesRequest",
                "ResponseObject",
                "ResponseStreamEvent",
                "OpenAIError",
                tag="openai",
                sentinel=False,
            )
        }
        if stored_responses:
            paths.update(stored_response_paths())
    if "anthropic" in names:
        schemas.update(anthropic_schemas(model_id, cap))
        paths["/v1/messages"] = {
            "post": _generation(
                "createMessage",
                "Anthropic Messages.",
                "MessagesRequest",
                "Message",
                "MessageStreamEvent",
                "AnthropicError",
                tag="anthropic",
            )
        }
        paths["/v1/messages/count_tokens"] = {
            "post": _count(
                "countMessageTokens",
                "Anthropic token counting: the prompt's tokens as the backend would read them.",
                "MessagesCountTokensRequest",
                "MessageTokensCount",
                "AnthropicError",
                tag="anthropic",
            )
        }
    if "gemini" in names:
        schemas.update(gemini_schemas(cap))
        for version in ("v1beta", "v1"):
            for action, streamed in (("generateContent", False), ("streamGenerateContent", True)):
                paths[f"/{version}/models/{{model}}:{action}"] = {
                    "post": _gemini(model_id, version, action, streamed)
                }
            paths[f"/{version}/models/{{model}}:countTokens"] = {
                "post": _count(
                    f"countTokens_{version}",
                    f"Gemini countTokens ({version}): the prompt's tokens as the backend would "
                    "read them.",
                    "CountTokensRequest",
                    "CountTokensResponse",
                    "GeminiError",
                    tag="gemini",
                    parameters=[_gemini_model(model_id)],
                )
            }
    if cancellation:
        paths["/v1/requests/{request_id}"] = {"delete": cancel_operation()}
    if resume:
        paths["/v1/streams/{request_id}"] = {"get": resume_operation()}
    if metrics:
        paths["/metrics"] = {"get": text_get_operation("Prometheus metrics.", "text/plain")}
    if playground:
        paths["/"] = {"get": text_get_operation("The playground page.", "text/html")}
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "tokenwire",
            "version": _version(),
            "description": f"Token-by-token streaming for the model `{model_id}` through the "
            "OpenAI, Anthropic and Gemini APIs. " + _STREAM_NOTE,
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if api_keys:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "googApiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
        }
        secured: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}, {"googApiKey": []}]
        for path, item in paths.items():
            if path.startswith("/v1"):
                for operation in item.values():
                    operation["security"] = secured
    return document


def openapi_routes(
    model_id: str, *, path: str = "/openapi.json", **options: Any
) -> list[BaseRoute]:
    """`GET /openapi.json` serving `build_openapi(model_id, **options)`.

    The server URL follows the mount prefix the request came through, so a mounted app's
    document points at its own paths.
    """
    documents: dict[str, dict[str, Any]] = {}

    async def serve(request: Request) -> Response:
        prefix = request.scope.get("root_path", "") or "/"
        if prefix not in documents:
            documents[prefix] = build_openapi(model_id, server_url=prefix, **options)
        return JSONResponse(documents[prefix])

    return [Route(path, serve, methods=["GET"], name="openapi")]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tokenwire")
    except PackageNotFoundError:
        return "0"


def _error_responses(error_schema: str) -> dict[str, Schema]:
    responses = {
        status: json_response(ref(error_schema), text, _REQUEST_ID_HEADER)
        for status, text in _ERRORS.items()
    }
    responses["429"]["headers"] = {
        **_REQUEST_ID_HEADER,
        "retry-after": {"description": "Seconds to wait.", "schema": {"type": "string"}},
    }
    return responses


def _streams(event_schema: str, error_schema: str, *, sentinel: bool = True) -> Schema:
    """The two streamed media types. An SSE schema describes one event (OpenAPI 3.1 has no
    `itemSchema`); its `data`, like each NDJSON line, holds one JSON payload: an event of
    the dialect, its in-band error, or OpenAI's closing `[DONE]` (SSE only; the Responses
    stream has none)."""
    payload = {"anyOf": [ref(event_schema), ref(error_schema)]}
    data: Schema = {"type": "string", "contentMediaType": _JSON, "contentSchema": payload}
    if error_schema == "OpenAIError" and sentinel:
        data = {"anyOf": [{"const": "[DONE]"}, data]}
    event = {
        "type": "object",
        "properties": {"data": data, "event": {"type": "string"}, "id": {"type": "string"}},
        "required": ["data"],
    }
    return {
        _SSE: {"schema": event},
        _NDJSON: {"schema": {"type": "string"}, "x-tokenwire-line": payload},
    }


def _generation(
    operation_id: str,
    summary: str,
    request: str,
    response: str,
    event: str,
    error: str,
    *,
    tag: str,
    sentinel: bool = True,
) -> Schema:
    streams = _streams(event, error, sentinel=sentinel)
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": 'With `"stream": true` the response streams. ' + _STREAM_NOTE,
        "tags": [tag],
        "parameters": _REQUEST_HEADERS,
        "requestBody": {"required": True, "content": {_JSON: {"schema": ref(request)}}},
        "responses": {
            "200": {
                "description": "The whole response, or its stream.",
                "headers": _REQUEST_ID_HEADER,
                "content": {_JSON: {"schema": ref(response)}, **streams},
            },
            **_error_responses(error),
        },
    }


def _count(
    operation_id: str,
    summary: str,
    request: str,
    response: str,
    error: str,
    *,
    tag: str,
    parameters: list[Schema] | None = None,
) -> Schema:
    """A token count: not a stream, never queued (no 429), no deadline (no 504)."""
    errors = _error_responses(error)
    del errors["429"], errors["504"]
    errors["400"] = json_response(
        ref(error),
        _ERRORS["400"] + " Also: the backend cannot count tokens.",
        _REQUEST_ID_HEADER,
    )
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": "Counts the prompt exactly as a generation of the same request would "
        "prefill it (chat template and tools included).",
        "tags": [tag],
        "parameters": parameters or [],
        "requestBody": {"required": True, "content": {_JSON: {"schema": ref(request)}}},
        "responses": {
            "200": json_response(ref(response), "The count.", _REQUEST_ID_HEADER),
            **errors,
        },
    }


def _gemini_model(model_id: str) -> Schema:
    return {
        "name": "model",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [model_id]},
    }


def _gemini(model_id: str, version: str, action: str, streamed: bool) -> Schema:
    streams = _streams("GenerateContentResponse", "GeminiError")
    content = streams if streamed else {_JSON: {"schema": ref("GenerateContentResponse")}}
    note = (
        " Server-sent events carry bare `data:` lines only (google-genai accepts nothing else); "
        "`?alt=sse` is accepted and changes nothing."
        if streamed
        else ""
    )
    return {
        "operationId": f"{action}_{version}",
        "summary": f"Gemini {action} ({version}).",
        "description": "The model may also be given as `models/{model}`." + note,
        "tags": ["gemini"],
        "parameters": [_gemini_model(model_id), *_REQUEST_HEADERS],
        "requestBody": {
            "required": True,
            "content": {_JSON: {"schema": ref("GenerateContentRequest")}},
        },
        "responses": {
            "200": {
                "description": "The response.",
                "headers": _REQUEST_ID_HEADER,
                "content": content,
            },
            **_error_responses("GeminiError"),
        },
    }
