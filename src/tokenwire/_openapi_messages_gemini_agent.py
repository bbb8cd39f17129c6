"""JSON Schemas of the Anthropic and Gemini agent fields (tools, tool choice, tool-call
history, thinking, JSON output), for `_openapi_messages_gemini.py`.

Two checks cross fields in a way JSON Schema cannot state: a tool named by Anthropic's
`tool_choice: {"type": "tool"}` and Gemini's `allowedFunctionNames` must be declared in the
same request. The schemas describe those forms in prose only (they are accepted when the
name is declared, refused with a 400 otherwise), so every body valid by schema is accepted.
"""

from __future__ import annotations

from tokenwire._openapi_base import NULL, STRING, Schema, nullable, obj
from tokenwire.dialects._anthropic_blocks import MIN_THINKING_BUDGET, TOOL_NAME_PATTERN
from tokenwire.dialects._gemini_config import (
    FUNCTION_NAME_PATTERN,
    MIME_TYPES,
    MODES,
    SCHEMA_TYPES,
)
from tokenwire.dialects._validate import MAX_TOKENS_LIMIT

_OBJECT: Schema = {"type": "object"}


def _opt(kind: str) -> Schema:
    return {"type": [kind, "null"]}


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


# Anthropic Messages

_TEXT_BLOCK = obj({"type": {"const": "text"}, "text": STRING}, "type", "text")
_TOOL_RESULT = obj(
    {
        "type": {"const": "tool_result"},
        "tool_use_id": STRING,
        "content": {"anyOf": [STRING, _array(_TEXT_BLOCK), NULL]},
        "is_error": _opt("boolean"),
    },
    "type",
    "tool_use_id",
    description="A tool's result: a tool turn named after the matching tool_use. "
    'An is_error result reads as "Error: " + its text.',
)
_TOOL_USE = obj(
    {"type": {"const": "tool_use"}, "id": STRING, "name": STRING, "input": _OBJECT},
    "type",
    "id",
    "name",
    "input",
)
_THINKING = obj(
    {"type": {"const": "thinking"}, "thinking": STRING},
    "type",
    "thinking",
    description="Accepted and left out of the prompt; the signature is not checked.",
)
_REDACTED = obj({"type": {"const": "redacted_thinking"}, "data": STRING}, "type", "data")


def _message(role: str, blocks: list[Schema]) -> Schema:
    content = {"anyOf": [STRING, _array({"anyOf": blocks})]}
    return obj({"role": {"const": role}, "content": content}, "role", "content")


def anthropic_request_fields() -> Schema:
    """The Messages request's `messages` and agent fields."""
    tool = obj(
        {
            "type": {"anyOf": [{"const": "custom"}, NULL]},
            "name": {"type": "string", "pattern": TOOL_NAME_PATTERN},
            "description": _opt("string"),
            "input_schema": obj({"type": {"const": "object"}}, "type"),
            "strict": _opt("boolean"),
        },
        "name",
        "input_schema",
        description="A custom tool; server tools (another `type`) get 400.",
    )
    fmt = nullable(obj({"type": {"const": "json_schema"}, "schema": _OBJECT}, "type", "schema"))
    return {
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "anyOf": [
                    _message("user", [_TEXT_BLOCK, _TOOL_RESULT]),
                    _message("assistant", [_TEXT_BLOCK, _TOOL_USE, _THINKING, _REDACTED]),
                ]
            },
        },
        "tools": nullable(_array(tool)),
        "tool_choice": nullable(
            obj(
                {
                    "type": {"enum": ["auto", "any", "none"]},
                    "disable_parallel_tool_use": _opt("boolean"),
                },
                "type",
                description='Also {"type": "tool", "name": N}, where N names a tool in '
                "`tools` (any other name gets 400).",
            )
        ),
        "thinking": {
            "anyOf": [
                obj(
                    {
                        "type": {"const": "enabled"},
                        "budget_tokens": {
                            "type": "integer",
                            "minimum": MIN_THINKING_BUDGET,
                            "maximum": MAX_TOKENS_LIMIT,
                        },
                    },
                    "type",
                    "budget_tokens",
                ),
                obj({"type": {"enum": ["adaptive", "disabled"]}}, "type"),
                NULL,
            ]
        },
        "output_config": nullable(obj({"format": fmt})),
        "output_format": {**fmt, "description": "The structured-outputs beta's spelling."},
    }


def anthropic_response_blocks() -> Schema:
    """A whole message's content blocks."""
    thinking = obj(
        {"type": {"const": "thinking"}, "thinking": STRING, "signature": STRING},
        "type",
        "thinking",
        "signature",
    )
    return {"anyOf": [_TEXT_BLOCK, thinking, _TOOL_USE]}


# Gemini generateContent

_SCHEMA_TYPES = [*SCHEMA_TYPES, *(kind.lower() for kind in SCHEMA_TYPES)]


def gemini_schema_schema() -> Schema:
    """Gemini's `Schema` (an OpenAPI 3.0 subset), as far as it is read."""
    self = {"$ref": "#/components/schemas/GeminiSchema"}
    return obj(
        {
            "type": {"anyOf": [{"enum": _SCHEMA_TYPES}, NULL]},
            "nullable": _opt("boolean"),
            "properties": nullable({"type": "object", "additionalProperties": self}),
            "items": nullable(self),
            "anyOf": nullable(_array(self)),
        },
        description="Converted to JSON Schema: lower-case types, nullable as a null type.",
    )


def gemini_contents() -> Schema:
    """`Content` turns: a model turn's parts are text or functionCall, others' text or
    functionResponse."""
    text = obj({"text": STRING}, "text")
    thought = obj({"text": STRING, "thought": _opt("boolean")}, "text")
    call = obj({"name": STRING, "args": _opt("object"), "id": _opt("string")}, "name")
    reply = obj({"name": STRING, "response": _opt("object"), "id": _opt("string")}, "name")
    # A part with text is a text part, whatever else it holds.
    model_parts = _array(
        {"anyOf": [thought, obj({"text": NULL, "functionCall": call}, "functionCall")]}
    )
    user_parts = _array(
        {
            "anyOf": [
                text,
                obj({"text": NULL, "functionResponse": reply}, "functionResponse"),
            ]
        }
    )
    return {
        "anyOf": [
            obj({"role": {"const": "model"}, "parts": model_parts}, "role", "parts"),
            # An empty or absent role means the user.
            obj(
                {"role": {"enum": ["user", "function", "tool", "", None]}, "parts": user_parts},
                "parts",
            ),
        ]
    }


def gemini_request_fields() -> Schema:
    """The request's `tools` and `toolConfig`."""
    schema = {"$ref": "#/components/schemas/GeminiSchema"}
    declaration = obj(
        {
            "name": {"type": "string", "pattern": FUNCTION_NAME_PATTERN},
            "description": _opt("string"),
            "parameters": nullable(schema),
            "parametersJsonSchema": _opt("object"),
        },
        "name",
        # Not both schemas.
        **{
            "not": obj(
                {"parameters": _OBJECT, "parametersJsonSchema": _OBJECT},
                "parameters",
                "parametersJsonSchema",
            )
        },
    )
    tool = obj(
        {"functionDeclarations": nullable(_array(declaration))},
        # Built-in tools (googleSearch, codeExecution, …) get 400.
        additionalProperties=NULL,
    )
    calling = obj(
        {
            "mode": {"anyOf": [{"enum": list(MODES)}, NULL]},
            "allowedFunctionNames": {
                "anyOf": [{"type": "array", "maxItems": 0}, NULL],
                "description": "Names of declared functions (any other name gets 400).",
            },
        }
    )
    return {
        "tools": nullable(_array(tool)),
        "toolConfig": nullable(obj({"functionCallingConfig": nullable(calling)})),
    }


def gemini_config_fields() -> Schema:
    """The generationConfig's JSON-output and thinking fields."""
    return {
        "responseMimeType": {"anyOf": [{"enum": list(MIME_TYPES)}, NULL]},
        "responseSchema": nullable({"$ref": "#/components/schemas/GeminiSchema"}),
        "responseJsonSchema": _opt("object"),
        "thinkingConfig": nullable(
            obj(
                {
                    "thinkingBudget": {
                        "type": ["integer", "null"],
                        "minimum": -1,
                        "maximum": MAX_TOKENS_LIMIT,
                    },
                    "includeThoughts": _opt("boolean"),
                }
            )
        ),
    }


def gemini_config_rules() -> list[Schema]:
    """What the JSON fields need together: a response schema only with application/json,
    and not both kinds of schema."""
    schemas = ("responseSchema", "responseJsonSchema")
    return [
        {
            "anyOf": [
                obj({"responseMimeType": {"const": "application/json"}}, "responseMimeType"),
                obj({name: NULL for name in schemas}),
            ]
        },
        {"not": obj({name: _OBJECT for name in schemas}, *schemas)},
    ]


def gemini_response_parts() -> Schema:
    call = obj({"name": STRING, "args": _OBJECT, "id": STRING}, "name", "args")
    return {
        "anyOf": [
            obj({"text": STRING, "thought": {"type": "boolean"}}, "text"),
            obj({"functionCall": call}, "functionCall"),
        ]
    }
