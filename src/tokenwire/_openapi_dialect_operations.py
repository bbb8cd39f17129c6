"""OpenAPI operations of the dialects' generation and token-count endpoints, for `openapi.py`.

Every generation endpoint takes the same request headers and may answer the same error
statuses, each in its dialect's own error shape; a streamed one answers SSE or NDJSON. WebSocket
upgrades on the same paths have no OpenAPI form; the descriptions mention them.
"""

from __future__ import annotations

from tokenwire._openapi_base import JSON, NDJSON, SSE, Schema, json_response, ref

STREAM_NOTE = (
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
    data: Schema = {"type": "string", "contentMediaType": JSON, "contentSchema": payload}
    if error_schema == "OpenAIError" and sentinel:
        data = {"anyOf": [{"const": "[DONE]"}, data]}
    event = {
        "type": "object",
        "properties": {"data": data, "event": {"type": "string"}, "id": {"type": "string"}},
        "required": ["data"],
    }
    return {
        SSE: {"schema": event},
        NDJSON: {"schema": {"type": "string"}, "x-tokenwire-line": payload},
    }


def generation_operation(
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
        "description": 'With `"stream": true` the response streams. ' + STREAM_NOTE,
        "tags": [tag],
        "parameters": _REQUEST_HEADERS,
        "requestBody": {"required": True, "content": {JSON: {"schema": ref(request)}}},
        "responses": {
            "200": {
                "description": "The whole response, or its stream.",
                "headers": _REQUEST_ID_HEADER,
                "content": {JSON: {"schema": ref(response)}, **streams},
            },
            **_error_responses(error),
        },
    }


def count_operation(
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
        "requestBody": {"required": True, "content": {JSON: {"schema": ref(request)}}},
        "responses": {
            "200": json_response(ref(response), "The count.", _REQUEST_ID_HEADER),
            **errors,
        },
    }


def gemini_model_parameter(model_id: str) -> Schema:
    return {
        "name": "model",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [model_id]},
    }


def gemini_operation(model_id: str, version: str, action: str, streamed: bool) -> Schema:
    streams = _streams("GenerateContentResponse", "GeminiError")
    content = streams if streamed else {JSON: {"schema": ref("GenerateContentResponse")}}
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
        "parameters": [gemini_model_parameter(model_id), *_REQUEST_HEADERS],
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": ref("GenerateContentRequest")}},
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
