"""JSON Schemas of the Anthropic and Gemini agent fields (tools, tool choice, tool-call
history, thinking, JSON output), for `_openapi_schemas.py`.

Two checks cross fields in a way JSON Schema cannot state: a tool named by Anthropic's
`tool_choice: {"type": "tool"}` and Gemini's `allowedFunctionNames` must be declared in the
same request. The schemas describe those forms in prose only (they are accepted when the
name is declared, refused with a 400 otherwise), so every body valid by schema is accepted.
"""

from __future__ import annotations

from typing import Any

from tokenwire.dialects._anthropic_blocks import MIN_THINKING_BUDGET, TOOL_NAME_PATTERN
from tokenwire.dialects._gemini_config import (
    FUNCTION_NAME_PATTERN,
    MIME_TYPES,
    MODES,
    SCHEMA_TYPES,
)
from tokenwire.dialects._validate import MAX_TOKENS_LIMIT

Schema = dict[str, Any]

_STRING: Schema = {"type": "string"}
_OBJECT: Schema = {"type": "object"}
_NULL: Schema = {"type": "null"}


def _object(properties: Schema, required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return {**schema, **extra}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, _NULL]}


def _opt(kind: str) -> Schema:
    return {"type": [kind, "null"]}


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


# Anthropic Messages

_TEXT_BLOCK = _object({"type": {"const": "text"}, "text": _STRING}, ("type", "text"))
_TOOL_RESULT = _object(
    {
        "type": {"const": "tool_result"},
        "tool_use_id": _STRING,
        "content": {"anyOf": [_STRING, _array(_TEXT_BLOCK), _NULL]},
        "is_error": _opt("boolean"),
    },
    ("type", "tool_use_id"),
    description="A tool's result: a tool turn named after the matching tool_use. "
    'An is_error result reads as "Error: " + its text.',
)
_TOOL_USE = _object(
    {"type": {"const": "tool_use"}, "id": _STRING, "name": _STRING, "input": _OBJECT},
    ("type", "id", "name", "input"),
)
_THINKING = _object(
    {"type": {"const": "thinking"}, "thinking": _STRING},
    ("type", "thinking"),
    description="Accepted and left out of the prompt; the signature is not checked.",
)
_REDACTED = _object({"type": {"const": "redacted_thinking"}, "data": _STRING}, ("type", "data"))


def _message(role: str, blocks: list[Schema]) -> Schema:
    content = {"anyOf": [_STRING, _array({"anyOf": blocks})]}
    return _object({"role": {"const": role}, "content": content}, ("role", "content"))


def anthropic_request_fields() -> Schema:
    """The Messages request's `messages` and agent fields."""
    tool = _object(
        {
            "type": {"anyOf": [{"const": "custom"}, _NULL]},
            "name": {"type": "string", "pattern": TOOL_NAME_PATTERN},
            "description": _opt("string"),
            "input_schema": _object({"type": {"const": "object"}}, ("type",)),
            "strict": _opt("boolean"),
        },
        ("name", "input_schema"),
        description="A custom tool; server tools (another `type`) get 400.",
    )
    fmt = _nullable(
        _object({"type": {"const": "json_schema"}, "schema": _OBJECT}, ("type", "schema"))
    )
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
        "tools": _nullable(_array(tool)),
        "tool_choice": _nullable(
            _object(
                {
                    "type": {"enum": ["auto", "any", "none"]},
                    "disable_parallel_tool_use": _opt("boolean"),
                },
                ("type",),
                description='Also {"type": "tool", "name": N}, where N names a tool in '
                "`tools` (any other name gets 400).",
            )
        ),
        "thinking": {
            "anyOf": [
                _object(
                    {
                        "type": {"const": "enabled"},
                        "budget_tokens": {
                            "type": "integer",
                            "minimum": MIN_THINKING_BUDGET,
                            "maximum": MAX_TOKENS_LIMIT,
                        },
                    },
                    ("type", "budget_tokens"),
                ),
                _object({"type": {"enum": ["adaptive", "disabled"]}}, ("type",)),
                _NULL,
            ]
        },
        "output_config": _nullable(_object({"format": fmt})),
        "output_format": {**fmt, "description": "The structured-outputs beta's spelling."},
    }


def anthropic_response_blocks() -> Schema:
    """A whole message's content blocks."""
    thinking = _object(
        {"type": {"const": "thinking"}, "thinking": _STRING, "signature": _STRING},
        ("type", "thinking", "signature"),
    )
    return {"anyOf": [_TEXT_BLOCK, thinking, _TOOL_USE]}


# Gemini generateContent

_SCHEMA_TYPES = [*SCHEMA_TYPES, *(kind.lower() for kind in SCHEMA_TYPES)]


def gemini_schema_schema() -> Schema:
    """Gemini's `Schema` (an OpenAPI 3.0 subset), as far as it is read."""
    self = {"$ref": "#/components/schemas/GeminiSchema"}
    return _object(
        {
            "type": {"anyOf": [{"enum": _SCHEMA_TYPES}, _NULL]},
            "nullable": _opt("boolean"),
            "properties": _nullable({"type": "object", "additionalProperties": self}),
            "items": _nullable(self),
            "anyOf": _nullable(_array(self)),
        },
        description="Converted to JSON Schema: lower-case types, nullable as a null type.",
    )


def gemini_contents() -> Schema:
    """`Content` turns: a model turn's parts are text or functionCall, others' text or
    functionResponse."""
    text = _object({"text": _STRING}, ("text",))
    thought = _object({"text": _STRING, "thought": _opt("boolean")}, ("text",))
    call = _object({"name": _STRING, "args": _opt("object"), "id": _opt("string")}, ("name",))
    reply = _object({"name": _STRING, "response": _opt("object"), "id": _opt("string")}, ("name",))
    # A part with text is a text part, whatever else it holds.
    model_parts = _array(
        {"anyOf": [thought, _object({"text": _NULL, "functionCall": call}, ("functionCall",))]}
    )
    user_parts = _array(
        {
            "anyOf": [
                text,
                _object({"text": _NULL, "functionResponse": reply}, ("functionResponse",)),
            ]
        }
    )
    return {
        "anyOf": [
            _object({"role": {"const": "model"}, "parts": model_parts}, ("role", "parts")),
            # An empty or absent role means the user.
            _object(
                {"role": {"enum": ["user", "function", "tool", "", None]}, "parts": user_parts},
                ("parts",),
            ),
        ]
    }


def gemini_request_fields() -> Schema:
    """The request's `tools` and `toolConfig`."""
    schema = {"$ref": "#/components/schemas/GeminiSchema"}
    declaration = _object(
        {
            "name": {"type": "string", "pattern": FUNCTION_NAME_PATTERN},
            "description": _opt("string"),
            "parameters": _nullable(schema),
            "parametersJsonSchema": _opt("object"),
        },
        ("name",),
        # Not both schemas.
        **{
            "not": _object(
                {"parameters": _OBJECT, "parametersJsonSchema": _OBJECT},
                ("parameters", "parametersJsonSchema"),
            )
        },
    )
    tool = _object(
        {"functionDeclarations": _nullable(_array(declaration))},
        # Built-in tools (googleSearch, codeExecution, …) get 400.
        additionalProperties=_NULL,
    )
    calling = _object(
        {
            "mode": {"anyOf": [{"enum": list(MODES)}, _NULL]},
            "allowedFunctionNames": {
                "anyOf": [{"type": "array", "maxItems": 0}, _NULL],
                "description": "Names of declared functions (any other name gets 400).",
            },
        }
    )
    return {
        "tools": _nullable(_array(tool)),
        "toolConfig": _nullable(_object({"functionCallingConfig": _nullable(calling)})),
    }


def gemini_config_fields() -> Schema:
    """The generationConfig's JSON-output and thinking fields."""
    return {
        "responseMimeType": {"anyOf": [{"enum": list(MIME_TYPES)}, _NULL]},
        "responseSchema": _nullable({"$ref": "#/components/schemas/GeminiSchema"}),
        "responseJsonSchema": _opt("object"),
        "thinkingConfig": _nullable(
            _object(
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
                _object({"responseMimeType": {"const": "application/json"}}, ("responseMimeType",)),
                _object({name: _NULL for name in schemas}),
            ]
        },
        {"not": _object({name: _OBJECT for name in schemas}, schemas)},
    ]


def gemini_response_parts() -> Schema:
    call = _object({"name": _STRING, "args": _OBJECT, "id": _STRING}, ("name", "args"))
    return {
        "anyOf": [
            _object({"text": _STRING, "thought": {"type": "boolean"}}, ("text",)),
            _object({"functionCall": call}, ("functionCall",)),
        ]
    }
