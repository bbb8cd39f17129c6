"""JSON Schemas of the OpenAI Responses dialect — its request, the `response` object and its
stream events — for `openapi.py`.

As in `_openapi_schemas`, the request schema admits exactly what `dialects/_responses_input.py`
and `dialects/openai_responses.py` accept; a `{"type": "function", "name"}` tool_choice must
name one of `tools`, which a schema cannot state, so it is described in prose only.
"""

from __future__ import annotations

from typing import Any

from tokenwire.dialects._openai_tools import MAX_TOP_LOGPROBS, NAME_PATTERN, REASONING_EFFORTS
from tokenwire.dialects._responses_input import (
    INCLUDABLE,
    MAX_METADATA_KEY,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE,
)
from tokenwire.dialects._validate import MAX_TOKENS_LIMIT

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}
_NAME: Schema = {"type": "string", "pattern": NAME_PATTERN}


def _object(properties: Schema, *required: str) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    return {**schema, "required": list(required)} if required else schema


def _optional(kind: str, **constraints: Any) -> Schema:
    return {"type": [kind, "null"], **constraints}


def _const(value: str) -> Schema:
    return {"const": value}


def _text() -> Schema:
    part = _object(
        {"type": {"enum": ["input_text", "output_text"]}, "text": _STRING}, "type", "text"
    )
    return {"anyOf": [_STRING, {"type": "array", "items": part}]}


def _input_items() -> list[Schema]:
    message = _object(
        {
            "type": _const("message"),
            "role": {"enum": ["user", "assistant", "system", "developer"]},
            "content": _text(),
        },
        "role",
        "content",
    )
    call = _object(
        {
            "type": _const("function_call"),
            "call_id": _STRING,
            "name": _STRING,
            "arguments": _STRING,
        },
        "type",
        "call_id",
        "name",
        "arguments",
    )
    output = _object(
        {"type": _const("function_call_output"), "call_id": _STRING, "output": _text()},
        "type",
        "call_id",
        "output",
    )
    return [message, call, output]


def _request(model_id: str, cap: int, timeout: Schema) -> Schema:
    items = _input_items()
    reasoning_item = _object({"type": _const("reasoning")}, "type")
    tool = _object(
        {
            "type": _const("function"),
            "name": _NAME,
            "description": _optional("string"),
            "parameters": _optional("object", description="A JSON Schema."),
            "strict": _optional("boolean", description="Default true, as the API's."),
        },
        "type",
        "name",
    )
    text_format = {
        "anyOf": [
            {"type": "null"},
            _object({"type": {"enum": ["text", "json_object"]}}, "type"),
            _object(
                {
                    "type": _const("json_schema"),
                    "name": _NAME,
                    "schema": {"type": "object", "description": "A JSON Schema."},
                    "strict": _optional("boolean"),
                    "description": _optional("string"),
                },
                "type",
                "name",
                "schema",
            ),
        ]
    }
    return _object(
        {
            "model": {"type": "string", "enum": [model_id]},
            "input": {
                "anyOf": [
                    _STRING,
                    {
                        "type": "array",
                        "items": {"anyOf": [*items, reasoning_item]},
                        "contains": {"anyOf": items},
                        "description": "Reasoning items are accepted and left out of the "
                        "prompt; at least one item must be another kind.",
                    },
                ]
            },
            "instructions": _optional("string"),
            "stream": _optional("boolean"),
            "store": _optional(
                "boolean",
                description="Keep the response for GET /v1/responses/{id} and "
                "previous_response_id (default true; the server's TTL and byte bounds apply).",
            ),
            "background": _optional(
                "boolean",
                description="Run apart from the connection; needs store. Answered at once "
                "(status queued), or streamed; retrieve, resume and cancel it by id. Refused "
                "over WebSocket.",
            ),
            "previous_response_id": _optional(
                "string",
                description="Continue from a stored response: its input and output come "
                "before this input (its instructions do not). Unknown or expired: 404.",
            ),
            "conversation": {"type": "null", "description": "Not supported."},
            "max_output_tokens": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": min(cap, MAX_TOKENS_LIMIT),
            },
            "temperature": _optional("number", minimum=0, maximum=2),
            "top_p": _optional("number", exclusiveMinimum=0, maximum=1),
            "top_logprobs": _optional("integer", minimum=0, maximum=MAX_TOP_LOGPROBS),
            "include": {"type": ["array", "null"], "items": {"enum": list(INCLUDABLE)}},
            "metadata": _optional(
                "object",
                maxProperties=MAX_METADATA_PAIRS,
                propertyNames={"maxLength": MAX_METADATA_KEY},
                additionalProperties={"type": "string", "maxLength": MAX_METADATA_VALUE},
            ),
            "tools": {"type": ["array", "null"], "items": tool},
            "tool_choice": {
                "enum": ["none", "auto", "required", None],
                "description": '`{"type": "function", "name": ...}` is accepted too when it '
                "names one of `tools`.",
            },
            "parallel_tool_calls": _optional("boolean"),
            "text": _optional("object", properties={"format": text_format}),
            "reasoning": _optional(
                "object",
                properties={
                    "effort": {"enum": [*REASONING_EFFORTS, None]},
                    "summary": _optional("string"),
                },
            ),
            "timeout": timeout,
        },
        "model",
        "input",
    )


def _items_out() -> Schema:
    logprob = _object({"token": _STRING, "logprob": {"type": "number"}}, "token", "logprob")
    output_text = _object(
        {
            "type": _const("output_text"),
            "text": _STRING,
            "annotations": {"type": "array", "maxItems": 0},
            "logprobs": {"type": "array", "items": logprob},
        },
        "type",
        "text",
        "annotations",
    )
    status = {"enum": ["in_progress", "completed", "incomplete"]}
    reasoning_text = _object({"type": _const("reasoning_text"), "text": _STRING}, "type", "text")
    return {
        "anyOf": [
            _object(
                {
                    "type": _const("message"),
                    "id": _STRING,
                    "role": _const("assistant"),
                    "status": status,
                    "content": {"type": "array", "items": output_text},
                },
                "type",
                "id",
                "role",
                "status",
                "content",
            ),
            _object(
                {
                    "type": _const("reasoning"),
                    "id": _STRING,
                    "status": status,
                    "summary": {"type": "array", "maxItems": 0},
                    "content": {"type": "array", "items": reasoning_text},
                },
                "type",
                "id",
                "summary",
            ),
            _object(
                {
                    "type": _const("function_call"),
                    "id": _STRING,
                    "call_id": _STRING,
                    "name": _STRING,
                    "arguments": _STRING,
                    "status": status,
                },
                "type",
                "call_id",
                "name",
                "arguments",
            ),
        ]
    }


def _response() -> Schema:
    usage = _object(
        {
            "input_tokens": _INT,
            "input_tokens_details": _object({"cached_tokens": _INT}, "cached_tokens"),
            "output_tokens": _INT,
            "output_tokens_details": _object({"reasoning_tokens": _INT}, "reasoning_tokens"),
            "total_tokens": _INT,
        },
        "input_tokens",
        "input_tokens_details",
        "output_tokens",
        "output_tokens_details",
        "total_tokens",
    )
    return _object(
        {
            "id": _STRING,
            "object": _const("response"),
            "created_at": _INT,
            "status": {
                "enum": ["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
            },
            "background": {"type": "boolean"},
            "previous_response_id": {"type": ["string", "null"]},
            "error": {
                "anyOf": [
                    {"type": "null"},
                    _object({"code": _STRING, "message": _STRING}, "code", "message"),
                ]
            },
            "incomplete_details": {
                "anyOf": [{"type": "null"}, _object({"reason": _STRING}, "reason")]
            },
            "model": _STRING,
            "output": {"type": "array", "items": {"$ref": "#/components/schemas/ResponseItem"}},
            "usage": {"anyOf": [{"type": "null"}, usage]},
            "metadata": {"type": "object", "additionalProperties": _STRING},
        },
        "id",
        "object",
        "created_at",
        "status",
        "model",
        "output",
    )


def _events() -> Schema:
    response = {"$ref": "#/components/schemas/ResponseObject"}
    item = {"$ref": "#/components/schemas/ResponseItem"}
    where = {"item_id": _STRING, "output_index": _INT}
    content = {**where, "content_index": _INT}
    part = {"type": "object", "properties": {"type": {"enum": ["output_text", "reasoning_text"]}}}

    def event(kind: str | list[str], fields: Schema) -> Schema:
        type_schema = {"enum": kind} if isinstance(kind, list) else _const(kind)
        properties = {"type": type_schema, "sequence_number": _INT, **fields}
        return _object(properties, *properties)

    return {
        "anyOf": [
            event(
                [
                    "response.created",
                    "response.in_progress",
                    "response.completed",
                    "response.incomplete",
                    "response.failed",
                ],
                {"response": response},
            ),
            event(
                ["response.output_item.added", "response.output_item.done"],
                {"output_index": _INT, "item": item},
            ),
            event(
                ["response.content_part.added", "response.content_part.done"],
                {**content, "part": part},
            ),
            event(
                "response.output_text.delta",
                {**content, "delta": _STRING, "logprobs": {"type": "array"}},
            ),
            event(
                "response.output_text.done",
                {**content, "text": _STRING, "logprobs": {"type": "array"}},
            ),
            event("response.reasoning_text.delta", {**content, "delta": _STRING}),
            event("response.reasoning_text.done", {**content, "text": _STRING}),
            event("response.function_call_arguments.delta", {**where, "delta": _STRING}),
            event(
                "response.function_call_arguments.done",
                {**where, "name": _STRING, "arguments": _STRING},
            ),
        ]
    }


def responses_schemas(model_id: str, cap: int, timeout: Schema) -> dict[str, Schema]:
    """`ResponsesRequest`, `ResponseObject`, `ResponseItem` and `ResponseStreamEvent`."""
    request = _request(model_id, cap, timeout)
    # A background response must be stored (400 otherwise).
    request["not"] = _object(
        {"background": {"const": True}, "store": {"const": False}}, "background", "store"
    )
    return {
        "ResponsesRequest": request,
        "ResponseObject": _response(),
        "ResponseItem": _items_out(),
        "ResponseStreamEvent": _events(),
    }


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def stored_response_paths() -> dict[str, Any]:
    """`GET`/`DELETE /v1/responses/{response_id}` and `POST .../cancel`."""
    error = {"$ref": "#/components/schemas/OpenAIError"}
    response = {"$ref": "#/components/schemas/ResponseObject"}
    path_id = {"name": "response_id", "in": "path", "required": True, "schema": _STRING}
    not_found = _json(error, "No stored response with this id (never stored, expired, deleted).")
    retrieve = {
        "operationId": "getResponse",
        "summary": "A stored response: a background one's output so far while it runs. With "
        "stream=true (background responses only), its events after `starting_after`, then "
        "the live rest.",
        "tags": ["openai"],
        "parameters": [
            path_id,
            {"name": "stream", "in": "query", "required": False, "schema": {"type": "boolean"}},
            {
                "name": "starting_after",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999},
            },
        ],
        "responses": {
            "200": {
                "description": "The response, or its events.",
                "content": {
                    "application/json": {"schema": response},
                    "text/event-stream": {
                        "schema": {"$ref": "#/components/schemas/ResponseStreamEvent"}
                    },
                },
            },
            "400": _json(error, "stream=true for a response that was not run in background."),
            "404": not_found,
        },
    }
    delete = {
        "operationId": "deleteResponse",
        "summary": "Forget a stored response (a running background one is cancelled).",
        "tags": ["openai"],
        "parameters": [path_id],
        "responses": {
            "200": _json(
                _object(
                    {"id": _STRING, "object": _const("response"), "deleted": {"const": True}},
                    "id",
                    "object",
                    "deleted",
                ),
                "Deleted.",
            ),
            "404": not_found,
        },
    }
    cancel = {
        "operationId": "cancelResponse",
        "summary": "Stop a queued or running background response within one decode step.",
        "tags": ["openai"],
        "parameters": [path_id],
        "responses": {
            "200": _json(response, "The response, status cancelled."),
            "400": _json(error, "Not a background response, or it has finished."),
            "404": not_found,
        },
    }
    return {
        "/v1/responses/{response_id}": {"get": retrieve, "delete": delete},
        "/v1/responses/{response_id}/cancel": {"post": cancel},
    }
