"""JSON Schemas of the OpenAI dialects' agent fields — tools, tool calls, tool results,
response_format, logprobs, reasoning — in requests and in responses, for `_openapi_openai`.

As there, each request schema admits exactly what `dialects/_openai_tools.py` accepts. The one
rule a schema cannot state — a `{"type": "function"}` tool_choice must name a tool in `tools`
— is why that form is described in prose and left out of the schema.
"""

from __future__ import annotations

from tokenwire._openapi_base import NULL, STRING, Schema, nullable, obj, optional
from tokenwire.dialects._openai_tools import MAX_TOP_LOGPROBS, NAME_PATTERN, REASONING_EFFORTS
from tokenwire.dialects.openai_completions import MAX_LOGPROBS

_NAME: Schema = {"type": "string", "pattern": NAME_PATTERN}
_NUMBER: Schema = {"type": "number"}
FINISH_REASONS = ["stop", "length", "tool_calls"]


def _function_call() -> Schema:
    return obj(
        {
            "id": STRING,
            "type": {"const": "function"},
            "function": obj({"name": STRING, "arguments": STRING}, "name", "arguments"),
        },
        "id",
        "type",
        "function",
    )


def tool_calls_in_messages() -> Schema:
    """An assistant turn's `tool_calls`, as clients send them back."""
    return nullable({"type": "array", "items": _function_call()})


def tool_message(content: Schema) -> Schema:
    return obj(
        {"role": {"const": "tool"}, "tool_call_id": STRING, "content": content},
        "role",
        "tool_call_id",
        "content",
    )


def chat_request_properties() -> Schema:
    tool = obj(
        {
            "type": {"const": "function"},
            "function": obj(
                {
                    "name": _NAME,
                    "description": optional("string"),
                    "parameters": optional("object", description="A JSON Schema."),
                    "strict": optional("boolean"),
                },
                "name",
            ),
        },
        "type",
        "function",
    )
    json_schema = obj(
        {
            "name": _NAME,
            "description": optional("string"),
            "schema": optional("object", description="A JSON Schema; none: any object."),
            "strict": optional("boolean"),
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
        "parallel_tool_calls": optional("boolean"),
        "response_format": nullable(
            {
                "anyOf": [
                    obj({"type": {"enum": ["text", "json_object"]}}, "type"),
                    obj(
                        {"type": {"const": "json_schema"}, "json_schema": json_schema},
                        "type",
                        "json_schema",
                    ),
                ]
            }
        ),
        "logprobs": optional("boolean"),
        "top_logprobs": {
            **optional("integer", minimum=0, maximum=MAX_TOP_LOGPROBS),
            "description": "Only with `logprobs: true`.",
        },
        "reasoning_effort": {
            "enum": [*REASONING_EFFORTS, None],
            "description": "none and minimal turn reasoning off; low, medium and high on.",
        },
        "chat_template_kwargs": optional(
            "object",
            properties={"enable_thinking": optional("boolean"), "thinking": optional("boolean")},
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
    return obj(
        {
            "token": STRING,
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
    return nullable(obj({"content": content, "refusal": NULL}, "content"))


def legacy_logprobs() -> Schema:
    return nullable(
        obj(
            {
                "tokens": {"type": "array", "items": STRING},
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
        **optional("integer", minimum=0, maximum=MAX_LOGPROBS),
        "description": "Log probabilities of the sampled tokens and this many alternatives.",
    }


def _reasoning() -> Schema:
    return {"reasoning": STRING, "reasoning_content": STRING}


def chat_message() -> Schema:
    return obj(
        {
            "role": {"const": "assistant"},
            "content": {**optional("string"), "description": "null when only tools were called."},
            "refusal": NULL,
            **_reasoning(),
            "tool_calls": {"type": "array", "items": _function_call()},
        },
        "role",
        "content",
    )


def chat_delta() -> Schema:
    call = obj(
        {
            "index": {"type": "integer", "minimum": 0},
            "id": STRING,
            "type": {"const": "function"},
            "function": obj({"name": STRING, "arguments": STRING}),
        },
        "index",
    )
    return obj(
        {
            "role": {"const": "assistant"},
            "content": optional("string"),
            **_reasoning(),
            "tool_calls": {"type": "array", "items": call},
        }
    )
