"""The echo backend's deterministic agent rules: which tools it calls, example JSON from a
schema, and made-up logprobs. Documented in docs/quickstart.md ("The echo backend's rules")."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

from tokenwire.errors import InvalidRequestError
from tokenwire.events import TokenLogprob
from tokenwire.requests import GenerationRequest, Tool

# Alternatives offered in `top` after the token itself (top_logprobs is at most 20).
_ALTERNATIVES = (
    "the", "a", "and", "of", "to", "in", "is", "it", "that", "for",
    "on", "with", "as", "was", "at", "by", "be", "this", "or",
)  # fmt: skip
_STRING_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "email": "echo@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-0000-0000-000000000000",
}


def check_supported(request: GenerationRequest) -> None:
    """Refuse, before any event, what the echo backend cannot honour.

    Raises:
        InvalidRequestError: a regex or grammar constraint, or a required tool that is not
            among the request's tools.
    """
    constraint = request.constraint
    if constraint is not None and constraint.kind in ("regex", "grammar"):
        raise InvalidRequestError(
            f"The echo backend cannot generate text under a {constraint.kind} constraint; "
            "it supports json_object and json_schema.",
            param="response_format",
        )
    choice = request.tool_choice
    if choice.mode == "required" and request.tools and choice.names:
        known = {tool.name for tool in request.tools}
        if not any(name in known for name in choice.names):
            raise InvalidRequestError(
                f"tool_choice names {list(choice.names)!r}, none of which is among the "
                f"request's tools {sorted(known)!r}.",
                param="tool_choice",
            )


def choose_tools(request: GenerationRequest, text: str) -> list[Tool]:
    """The tools the echo calls, in order: those the text names (as a whole word), else the
    first allowed one when the choice is "required"; one only without parallel calls."""
    choice = request.tool_choice
    if not request.tools or choice.mode == "none":
        return []
    allowed = list(request.tools)
    if choice.mode == "required" and choice.names:
        allowed = [tool for name in choice.names for tool in allowed if tool.name == name]
    mentioned = sorted(
        ((match.start(), tool) for tool in allowed if (match := _mention(tool.name, text))),
        key=lambda pair: pair[0],
    )
    chosen = [tool for _, tool in mentioned]
    if not chosen and choice.mode == "required" and allowed:
        chosen = allowed[:1]
    return chosen if request.parallel_tool_calls else chosen[:1]


def _mention(name: str, text: str) -> re.Match[str] | None:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)


def call_id(index: int, name: str, text: str) -> str:
    """`call_` and a hash of what the call depends on: the same request gives the same id."""
    digest = hashlib.sha256(f"{index}\0{name}\0{text}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def example_arguments(tool: Tool) -> Any:
    """The tool's example arguments: always a JSON object."""
    value = example_from_schema(tool.parameters)
    return value if isinstance(value, dict) else {}


def example_from_schema(schema: Any, root: Any = None) -> Any:
    """A small value valid under `schema`: only required properties, minimal lengths and
    counts, the first `enum`/`const`/`anyOf` choice, numbers inside their bounds. Local
    `$ref`s are followed; `pattern` is not honoured (the echo cannot generate from a regex)."""
    root = schema if root is None else root
    if not isinstance(schema, Mapping):
        return None
    if "$ref" in schema:
        return example_from_schema(_resolve(root, schema["$ref"]), root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example_from_schema(schema[key][0], root)
    if schema.get("allOf"):
        parts = [example_from_schema(part, root) for part in schema["allOf"]]
        if all(isinstance(part, dict) for part in parts):
            return {key: value for part in parts for key, value in part.items()}
        return parts[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema or "required" in schema else None
        kind = kind or ("array" if "items" in schema else None)
    if kind == "object":
        properties = schema.get("properties", {})
        return {
            name: example_from_schema(properties.get(name, {}), root)
            for name in schema.get("required", ())
        }
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [example_from_schema(schema.get("items", {}), root) for _ in range(count)]
    if kind == "string":
        if schema.get("format") in _STRING_FORMATS:
            return _STRING_FORMATS[schema["format"]]
        size = max(int(schema.get("minLength", 1)), 1)
        return "a" * min(size, int(schema.get("maxLength", size)))
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    return None


def _resolve(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        raise InvalidRequestError(f"Only local $refs are supported, got {ref[:100]!r}.")
    node = root
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            raise InvalidRequestError(f"The $ref {ref[:100]!r} names nothing in the schema.")
        node = node[part]
    return node


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    step = 1 if integer else 0.5
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), (int, float)):
        low = schema["exclusiveMinimum"] + step
    if isinstance(schema.get("exclusiveMaximum"), (int, float)):
        high = schema["exclusiveMaximum"] - step
    value: float = 0
    if low is not None and value < low:
        value = math.ceil(low) if integer else low
    if high is not None and value > high:
        value = math.floor(high) if integer else high
    multiple = schema.get("multipleOf")
    if multiple:
        value = math.ceil(value / multiple) * multiple
    return int(value) if integer else value


def logprob_for(token: str, top: int) -> TokenLogprob:
    """The echoed token is certain (0.0); `top` lists it first, then made-up alternatives with
    falling logprobs, keeping the token's leading whitespace."""
    stripped = token.lstrip()
    lead = token[: len(token) - len(stripped)]
    others = [word for word in _ALTERNATIVES if word != stripped]
    alternatives = [(lead + word, -10.0 * rank) for rank, word in enumerate(others, start=1)]
    return TokenLogprob(token, 0.0, tuple([(token, 0.0), *alternatives][:top]))
