"""JSON Schemas of the OpenAI dialects' agent fields — tools, tool calls, tool results,
response_format, logprobs, reasoning — in requests and in responses, for `_openapi_schemas`.

As there, each request schema admits exactly what `dialects/_openai_tools.py` accepts. The one
rule a schema cannot state — a `{"type": "function"}` tool_choice must name a tool in `tools`
— is why that form is described in prose and left out of the schema.
"""

from __future__ import annotations

from typing import Any

from tokenwire.dialects._openai_tools import MAX_TOP_LOGPROBS, NAME_PATTERN, REASONING_EFFORTS
from tokenwire.dialects.openai_completions import MAX_LOGPROBS

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_NULL: Schema = {"type": "null"}
_NAME: Schema = {"type": "string", "pattern": NAME_PATTERN}
_NUMBER: Schema = {"type": "number"}
FINISH_REASONS = ["stop", "length", "tool_calls"]


def _object(properties: Schema, *required: str) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    return {**schema, "required": list(required)} if required else schema


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, _NULL]}


def _optional(kind: str, **constraints: Any) -> Schema:
    return {"type": [kind, "null"], **constraints}


def _function_call() -> Schema:
    return _object(
        {
            "id": _STRING,
            "type": {"const": "function"},
            "function": _object({"name": _STRING, "arguments": _STRING}, "name", "arguments"),
        },
        "id",
        "type",
        "function",
    )


def tool_calls_in_messages() -> Schema:
    """An assistant turn's `tool_calls`, as clients send them back."""
    return _nullable({"type": "array", "items": _function_call()})


def tool_message(content: Schema) -> Schema:
    return _object(
        {"role": {"const": "tool"}, "tool_call_id": _STRING, "content": content},
        "role",
        "tool_call_id",
        "content",
    )


def chat_request_properties() -> Schema:
    tool = _object(
        {
            "type": {"const": "function"},
            "function": _object(
                {
                    "name": _NAME,
                    "description": _optional("string"),
                    "parameters": _optional("object", description="A JSON Schema."),
                    "strict": _optional("boolean"),
                },
                "name",
            ),
        },
        "type",
        "function",
    )
    json_schema = _object(
        {
            "name": _NAME,
            "description": _optional("string"),
            "schema": _optional("object", description="A JSON Schema; none: any object."),
            "strict": _optional("boolean"),
        },
        "name",
    )
    return {
        "tools": {"type": ["array", "null"], "items": tool},
        "tool_choice": {
            "enum": ["none", "auto", "required", None],
            "description": 'Only with `tools`. `{"type": "function", "function": '
            '{"name": ...}}` is accepted too when it names one of `tools` (then the '
            'finish_reason of the forced call is "stop", as OpenAI answers).',
        },
        "parallel_tool_calls": _optional("boolean"),
        "response_format": _nullable(
            {
                "anyOf": [
                    _object({"type": {"enum": ["text", "json_object"]}}, "type"),
                    _object(
                        {"type": {"const": "json_schema"}, "json_schema": json_schema},
                        "type",
                        "json_schema",
                    ),
                ]
            }
        ),
        "logprobs": _optional("boolean"),
        "top_logprobs": {
            **_optional("integer", minimum=0, maximum=MAX_TOP_LOGPROBS),
            "description": "Only with `logprobs: true`.",
        },
        "reasoning_effort": {
            "enum": [*REASONING_EFFORTS, None],
            "description": "none and minimal turn reasoning off; low, medium and high on.",
        },
        "chat_template_kwargs": _optional(
            "object",
            properties={"enable_thinking": _optional("boolean"), "thinking": _optional("boolean")},
            description="vLLM's: `enable_thinking` (or `thinking`) turns reasoning on or off; "
            "`reasoning_effort` wins when both are sent.",
        ),
    }


def chat_request_rules() -> Schema:
    """What one field asks of another: tool_choice needs tools; top_logprobs needs logprobs."""
    return {
        "allOf": [
            {
                "if": {
                    "properties": {"tool_choice": {"type": "string"}},
                    "required": ["tool_choice"],
                },
                "then": {
                    "properties": {"tools": {"type": "array", "minItems": 1}},
                    "required": ["tools"],
                },
            },
            {
                "if": {
                    "properties": {"top_logprobs": {"type": "integer"}},
                    "required": ["top_logprobs"],
                },
                "then": {"properties": {"logprobs": {"const": True}}, "required": ["logprobs"]},
            },
        ]
    }


def _token(extra: Schema) -> Schema:
    return _object(
        {
            "token": _STRING,
            "logprob": _NUMBER,
            "bytes": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}},
            **extra,
        },
        "token",
        "logprob",
        "bytes",
    )


def chat_logprobs() -> Schema:
    content = {
        "type": "array",
        "items": _token({"top_logprobs": {"type": "array", "items": _token({})}}),
    }
    return _nullable(_object({"content": content, "refusal": _NULL}, "content"))


def legacy_logprobs() -> Schema:
    return _nullable(
        _object(
            {
                "tokens": {"type": "array", "items": _STRING},
                "token_logprobs": {"type": "array", "items": _NUMBER},
                "top_logprobs": {
                    "type": "array",
                    "items": {"type": "object", "additionalProperties": _NUMBER},
                },
                "text_offset": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            },
            "tokens",
            "token_logprobs",
            "top_logprobs",
            "text_offset",
        )
    )


def legacy_logprobs_request() -> Schema:
    return {
        **_optional("integer", minimum=0, maximum=MAX_LOGPROBS),
        "description": "Log probabilities of the sampled tokens and this many alternatives.",
    }


def _reasoning() -> Schema:
    return {"reasoning": _STRING, "reasoning_content": _STRING}


def chat_message() -> Schema:
    return _object(
        {
            "role": {"const": "assistant"},
            "content": {**_optional("string"), "description": "null when only tools were called."},
            "refusal": _NULL,
            **_reasoning(),
            "tool_calls": {"type": "array", "items": _function_call()},
        },
        "role",
        "content",
    )


def chat_delta() -> Schema:
    call = _object(
        {
            "index": {"type": "integer", "minimum": 0},
            "id": _STRING,
            "type": {"const": "function"},
            "function": _object({"name": _STRING, "arguments": _STRING}),
        },
        "index",
    )
    return _object(
        {
            "role": {"const": "assistant"},
            "content": _optional("string"),
            **_reasoning(),
            "tool_calls": {"type": "array", "items": call},
        }
    )
