"""Gemini agent fields: `tools[].functionDeclarations`, `toolConfig`, and the
`generationConfig` fields for JSON output (`responseMimeType`, `responseSchema`,
`responseJsonSchema`) and thinking (`thinkingConfig`).

Gemini's `Schema` is an OpenAPI 3.0 subset (`type: "OBJECT"`, `nullable`); tokenwire's
requests carry JSON Schema, so it is converted here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tokenwire.dialects import _validate as v
from tokenwire.dialects._agent import AgentFields
from tokenwire.dialects._gemini_parts import get
from tokenwire.requests import OutputConstraint, Tool, ToolChoice, ToolChoiceMode

FUNCTION_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$"
MAX_SCHEMA_DEPTH = 32
"""How deeply a Gemini `Schema` may nest: deeper ones are refused, not converted."""
SCHEMA_TYPES = ("STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL")
MODES = ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED")
MIME_TYPES = ("text/plain", "application/json")

_FUNCTION_NAME = re.compile(FUNCTION_NAME_PATTERN)
_CHOICES: Mapping[str, ToolChoiceMode] = {
    "AUTO": "auto",
    "MODE_UNSPECIFIED": "auto",
    # VALIDATED: the model may answer or call, and calls follow their schemas.
    "VALIDATED": "auto",
    "ANY": "required",
    "NONE": "none",
}
# Keywords that mean the same in Gemini's Schema and JSON Schema, copied as they are.
_SAME = (
    "format",
    "title",
    "description",
    "enum",
    "required",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
    "default",
)


def parse_agent_config(
    body: Mapping[str, Any], config: Mapping[str, Any]
) -> tuple[AgentFields, bool]:
    """Read `tools` and `toolConfig` from the body and the JSON and thinking fields of its
    `generationConfig` (`config`); and whether the response shows the thoughts."""
    tools = _parse_tools(get(body, "tools", "tools"))
    choice = _parse_tool_config(get(body, "toolConfig", "tool_config"), {t.name for t in tools})
    reasoning, include_thoughts = _parse_thinking(get(config, "thinkingConfig", "thinking_config"))
    agent = AgentFields(
        tools=tools,
        tool_choice=choice,
        constraint=_parse_response_format(config),
        reasoning=reasoning,
    )
    return agent, include_thoughts


def _parse_tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    tools: list[Tool] = []
    for field, tool in v.objects(value, "tools"):
        for key, kind in tool.items():
            if kind is not None and key not in ("functionDeclarations", "function_declarations"):
                raise v.invalid(
                    f"{field}.{key}", "only functionDeclarations are supported (no built-in tools)"
                )
        declarations = get(tool, "functionDeclarations", "function_declarations")
        if declarations is None:
            continue
        for position, declaration in enumerate(
            v.as_list(declarations, f"{field}.functionDeclarations")
        ):
            tools.append(_function(declaration, f"{field}.functionDeclarations[{position}]"))
    # Names are not checked for uniqueness: a schema cannot state it.
    return tuple(tools)


def _function(value: Any, field: str) -> Tool:
    declaration = v.as_object(value, field)
    name = v.matching(
        v.require(declaration, "name", f"{field}."),
        f"{field}.name",
        _FUNCTION_NAME,
        f"expected a name matching {FUNCTION_NAME_PATTERN}",
    )
    parameters = declaration.get("parameters")
    json_schema = get(declaration, "parametersJsonSchema", "parameters_json_schema")
    if parameters is not None and json_schema is not None:
        raise v.invalid(f"{field}.parametersJsonSchema", "expected it or 'parameters', not both")
    if json_schema is not None:
        schema: Mapping[str, Any] = v.as_object(json_schema, f"{field}.parametersJsonSchema")
    elif parameters is not None:
        schema = to_json_schema(parameters, f"{field}.parameters")
    else:
        schema = {"type": "object", "properties": {}}
    description = v.optional_str(declaration, "description", f"{field}.") or ""
    return Tool(name=name, description=description, parameters=schema)


def to_json_schema(value: Any, field: str, depth: int = 0) -> dict[str, Any]:
    """A Gemini (OpenAPI 3.0 subset) `Schema` as JSON Schema: lower-case types (sent in
    either case), `nullable`
    as a `"null"` type, nested schemas converted; unknown keywords are dropped."""
    if depth > MAX_SCHEMA_DEPTH:
        raise v.invalid(field, f"expected a schema nested at most {MAX_SCHEMA_DEPTH} deep")
    schema = v.as_object(value, field)
    converted: dict[str, Any] = {key: schema[key] for key in _SAME if schema.get(key) is not None}
    nullable = v.optional_bool(schema, "nullable", f"{field}.")
    kind = schema.get("type")
    if kind is not None:
        if (
            not isinstance(kind, str)
            or kind.upper() not in SCHEMA_TYPES
            or kind
            not in (
                kind.upper(),
                kind.lower(),
            )
        ):
            raise v.invalid(f"{field}.type", f"expected one of {', '.join(SCHEMA_TYPES)}")
        converted["type"] = kind.lower()
        if nullable and kind.upper() != "NULL":
            converted["type"] = [kind.lower(), "null"]
    properties = schema.get("properties")
    if properties is not None:
        converted["properties"] = {
            key: to_json_schema(item, f"{field}.properties.{key}", depth + 1)
            for key, item in v.as_object(properties, f"{field}.properties").items()
        }
    items = schema.get("items")
    if items is not None:
        converted["items"] = to_json_schema(items, f"{field}.items", depth + 1)
    any_of = get(schema, "anyOf", "any_of")
    if any_of is not None:
        converted["anyOf"] = [
            to_json_schema(item, f"{field}.anyOf[{index}]", depth + 1)
            for index, item in enumerate(v.as_list(any_of, f"{field}.anyOf"))
        ]
    return converted


def _parse_tool_config(value: Any, names: set[str]) -> ToolChoice:
    if value is None:
        return ToolChoice()
    config = v.as_object(value, "toolConfig")
    calling = get(config, "functionCallingConfig", "function_calling_config")
    if calling is None:
        return ToolChoice()
    field = "toolConfig.functionCallingConfig"
    calling = v.as_object(calling, field)
    mode = calling.get("mode")
    mode = "AUTO" if mode is None else mode
    if not isinstance(mode, str) or mode not in _CHOICES:
        raise v.invalid(f"{field}.mode", f"expected one of {', '.join(MODES)}")
    allowed = get(calling, "allowedFunctionNames", "allowed_function_names")
    allowed_names: tuple[str, ...] = ()
    if allowed is not None:
        for index, name in enumerate(v.as_list(allowed, f"{field}.allowedFunctionNames")):
            if not isinstance(name, str) or name not in names:
                raise v.invalid(
                    f"{field}.allowedFunctionNames[{index}]",
                    "expected the name of a declared function",
                )
        allowed_names = tuple(allowed)
    choice = _CHOICES[mode]
    # The names narrow the choice only where the model must call (ANY), as the API says.
    return ToolChoice(choice, allowed_names if choice == "required" else ())


def _parse_response_format(config: Mapping[str, Any]) -> OutputConstraint | None:
    prefix = "generationConfig."
    mime = get(config, "responseMimeType", "response_mime_type")
    if mime is not None and mime not in MIME_TYPES:
        raise v.invalid(f"{prefix}responseMimeType", f"expected one of {', '.join(MIME_TYPES)}")
    schema = get(config, "responseSchema", "response_schema")
    json_schema = get(config, "responseJsonSchema", "response_json_schema")
    if schema is not None and json_schema is not None:
        raise v.invalid(f"{prefix}responseJsonSchema", "expected it or 'responseSchema', not both")
    if mime != "application/json":
        if schema is not None or json_schema is not None:
            raise v.invalid(
                f"{prefix}responseMimeType", "expected application/json with a response schema"
            )
        return None
    if json_schema is not None:
        return OutputConstraint(
            "json_schema", schema=v.as_object(json_schema, f"{prefix}responseJsonSchema")
        )
    if schema is not None:
        return OutputConstraint(
            "json_schema", schema=to_json_schema(schema, f"{prefix}responseSchema")
        )
    return OutputConstraint("json_object")


def _parse_thinking(value: Any) -> tuple[bool | None, bool]:
    """(reasoning, include_thoughts). A budget of 0 turns thinking off, a positive one on;
    -1 (dynamic) or none leaves it to the model."""
    if value is None:
        return None, False
    field = "generationConfig.thinkingConfig"
    thinking = v.as_object(value, field)
    budgets = {"thinkingBudget": get(thinking, "thinkingBudget", "thinking_budget")}
    budget = v.optional_int(
        budgets, "thinkingBudget", minimum=-1, maximum=v.MAX_TOKENS_LIMIT, prefix=f"{field}."
    )
    flags = {"includeThoughts": get(thinking, "includeThoughts", "include_thoughts")}
    include = bool(v.optional_bool(flags, "includeThoughts", f"{field}."))
    reasoning = None if budget is None or budget < 0 else budget > 0
    return reasoning, include
