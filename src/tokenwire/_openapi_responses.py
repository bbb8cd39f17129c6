"""JSON Schemas of the OpenAI Responses dialect — its request, the `response` object and its
stream events — for `openapi.py`.

As in `_openapi_openai`, the request schema admits exactly what `dialects/_responses_input.py`
and `dialects/openai_responses.py` accept; a `{"type": "function", "name"}` tool_choice must
name one of `tools`, which a schema cannot state, so it is described in prose only.
"""

from __future__ import annotations

from tokenwire._openapi_base import (
    STRING,
    TIMEOUT,
    Schema,
    const,
    obj,
    optional,
    ref,
    token_limit,
)
from tokenwire.dialects._openai_tools import MAX_TOP_LOGPROBS, NAME_PATTERN, REASONING_EFFORTS
from tokenwire.dialects._responses_input import (
    INCLUDABLE,
    MAX_METADATA_KEY,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE,
)

_INT: Schema = {"type": "integer"}
_NAME: Schema = {"type": "string", "pattern": NAME_PATTERN}


def _text() -> Schema:
    part = obj({"type": {"enum": ["input_text", "output_text"]}, "text": STRING}, "type", "text")
    return {"anyOf": [STRING, {"type": "array", "items": part}]}


def _input_items() -> list[Schema]:
    message = obj(
        {
            "type": const("message"),
            "role": {"enum": ["user", "assistant", "system", "developer"]},
            "content": _text(),
        },
        "role",
        "content",
    )
    call = obj(
        {
            "type": const("function_call"),
            "call_id": STRING,
            "name": STRING,
            "arguments": STRING,
        },
        "type",
        "call_id",
        "name",
        "arguments",
    )
    output = obj(
        {"type": const("function_call_output"), "call_id": STRING, "output": _text()},
        "type",
        "call_id",
        "output",
    )
    return [message, call, output]


def _request(model_id: str, cap: int) -> Schema:
    items = _input_items()
    reasoning_item = obj({"type": const("reasoning")}, "type")
    tool = obj(
        {
            "type": const("function"),
            "name": _NAME,
            "description": optional("string"),
            "parameters": optional("object", description="A JSON Schema."),
            "strict": optional("boolean", description="Default true, as the API's."),
        },
        "type",
        "name",
    )
    text_format = {
        "anyOf": [
            {"type": "null"},
            obj({"type": {"enum": ["text", "json_object"]}}, "type"),
            obj(
                {
                    "type": const("json_schema"),
                    "name": _NAME,
                    "schema": {"type": "object", "description": "A JSON Schema."},
                    "strict": optional("boolean"),
                    "description": optional("string"),
                },
                "type",
                "name",
                "schema",
            ),
        ]
    }
    return obj(
        {
            "model": {"type": "string", "enum": [model_id]},
            "input": {
                "anyOf": [
                    STRING,
                    {
                        "type": "array",
                        "items": {"anyOf": [*items, reasoning_item]},
                        "contains": {"anyOf": items},
                        "description": "Reasoning items are accepted and left out of the "
                        "prompt; at least one item must be another kind.",
                    },
                ]
            },
            "instructions": optional("string"),
            "stream": optional("boolean"),
            "store": optional(
                "boolean",
                description="Keep the response for GET /v1/responses/{id} and "
                "previous_response_id (default true; the server's TTL and byte bounds apply).",
            ),
            "background": optional(
                "boolean",
                description="Run apart from the connection; needs store. Answered at once "
                "(status queued), or streamed; retrieve, resume and cancel it by id. Refused "
                "over WebSocket.",
            ),
            "previous_response_id": optional(
                "string",
                description="Continue from a stored response: its input and output come "
                "before this input (its instructions do not). Unknown or expired: 404.",
            ),
            "conversation": {"type": "null", "description": "Not supported."},
            "max_output_tokens": token_limit(cap),
            "temperature": optional("number", minimum=0, maximum=2),
            "top_p": optional("number", exclusiveMinimum=0, maximum=1),
            "top_logprobs": optional("integer", minimum=0, maximum=MAX_TOP_LOGPROBS),
            "include": {"type": ["array", "null"], "items": {"enum": list(INCLUDABLE)}},
            "metadata": optional(
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
            "parallel_tool_calls": optional("boolean"),
            "text": optional("object", properties={"format": text_format}),
            "reasoning": optional(
                "object",
                properties={
                    "effort": {"enum": [*REASONING_EFFORTS, None]},
                    "summary": optional("string"),
                },
            ),
            "timeout": TIMEOUT,
        },
        "model",
        "input",
    )


def _items_out() -> Schema:
    logprob = obj({"token": STRING, "logprob": {"type": "number"}}, "token", "logprob")
    output_text = obj(
        {
            "type": const("output_text"),
            "text": STRING,
            "annotations": {"type": "array", "maxItems": 0},
            "logprobs": {"type": "array", "items": logprob},
        },
        "type",
        "text",
        "annotations",
    )
    status = {"enum": ["in_progress", "completed", "incomplete"]}
    reasoning_text = obj({"type": const("reasoning_text"), "text": STRING}, "type", "text")
    return {
        "anyOf": [
            obj(
                {
                    "type": const("message"),
                    "id": STRING,
                    "role": const("assistant"),
                    "status": status,
                    "content": {"type": "array", "items": output_text},
                },
                "type",
                "id",
                "role",
                "status",
                "content",
            ),
            obj(
                {
                    "type": const("reasoning"),
                    "id": STRING,
                    "status": status,
                    "summary": {"type": "array", "maxItems": 0},
                    "content": {"type": "array", "items": reasoning_text},
                },
                "type",
                "id",
                "summary",
            ),
            obj(
                {
                    "type": const("function_call"),
                    "id": STRING,
                    "call_id": STRING,
                    "name": STRING,
                    "arguments": STRING,
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
    usage = obj(
        {
            "input_tokens": _INT,
            "input_tokens_details": obj({"cached_tokens": _INT}, "cached_tokens"),
            "output_tokens": _INT,
            "output_tokens_details": obj({"reasoning_tokens": _INT}, "reasoning_tokens"),
            "total_tokens": _INT,
        },
        "input_tokens",
        "input_tokens_details",
        "output_tokens",
        "output_tokens_details",
        "total_tokens",
    )
    return obj(
        {
            "id": STRING,
            "object": const("response"),
            "created_at": _INT,
            "status": {
                "enum": ["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
            },
            "background": {"type": "boolean"},
            "previous_response_id": {"type": ["string", "null"]},
            "error": {
                "anyOf": [
                    {"type": "null"},
                    obj({"code": STRING, "message": STRING}, "code", "message"),
                ]
            },
            "incomplete_details": {"anyOf": [{"type": "null"}, obj({"reason": STRING}, "reason")]},
            "model": STRING,
            "output": {"type": "array", "items": ref("ResponseItem")},
            "usage": {"anyOf": [{"type": "null"}, usage]},
            "metadata": {"type": "object", "additionalProperties": STRING},
        },
        "id",
        "object",
        "created_at",
        "status",
        "model",
        "output",
    )


def _events() -> Schema:
    response = ref("ResponseObject")
    item = ref("ResponseItem")
    where = {"item_id": STRING, "output_index": _INT}
    content = {**where, "content_index": _INT}
    part = {"type": "object", "properties": {"type": {"enum": ["output_text", "reasoning_text"]}}}

    def event(kind: str | list[str], fields: Schema) -> Schema:
        type_schema = {"enum": kind} if isinstance(kind, list) else const(kind)
        properties = {"type": type_schema, "sequence_number": _INT, **fields}
        return obj(properties, *properties)

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
                {**content, "delta": STRING, "logprobs": {"type": "array"}},
            ),
            event(
                "response.output_text.done",
                {**content, "text": STRING, "logprobs": {"type": "array"}},
            ),
            event("response.reasoning_text.delta", {**content, "delta": STRING}),
            event("response.reasoning_text.done", {**content, "text": STRING}),
            event("response.function_call_arguments.delta", {**where, "delta": STRING}),
            event(
                "response.function_call_arguments.done",
                {**where, "name": STRING, "arguments": STRING},
            ),
        ]
    }


def responses_schemas(model_id: str, cap: int) -> dict[str, Schema]:
    """`ResponsesRequest`, `ResponseObject`, `ResponseItem` and `ResponseStreamEvent`."""
    request = _request(model_id, cap)
    # A background response must be stored (400 otherwise).
    request["not"] = obj(
        {"background": {"const": True}, "store": {"const": False}}, "background", "store"
    )
    return {
        "ResponsesRequest": request,
        "ResponseObject": _response(),
        "ResponseItem": _items_out(),
        "ResponseStreamEvent": _events(),
    }
