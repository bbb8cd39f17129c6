"""The building blocks of the OpenAPI document, shared by `openapi.py` and its `_openapi_*` parts.

Schemas are plain JSON-ready dicts; these helpers only spare each part their shapes. The
field schemas below are the ones several dialects' requests share, with the same bounds
their `parse` applies (see `dialects/_validate.py`). JSON `null` reads as "absent" for
optional fields, hence the `"null"` in their types.
"""

from __future__ import annotations

from typing import Any

from tokenwire.dialects._validate import MAX_TOKENS_LIMIT, SEED_MAX, SEED_MIN

Schema = dict[str, Any]

JSON = "application/json"
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: Schema, *required: str, **extra: Any) -> Schema:
    """An object with these properties, of which `required` must be present."""
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return {**schema, **extra}


def optional(kind: str, **constraints: Any) -> Schema:
    return {"type": [kind, "null"], **constraints}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, NULL]}


def const(value: str) -> Schema:
    return {"const": value}


def json_response(schema: Schema, description: str, headers: Schema | None = None) -> Schema:
    response: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


STRING: Schema = {"type": "string"}
NULL: Schema = {"type": "null"}
COUNT: Schema = {"type": "integer", "minimum": 0}

# Request fields that several dialects share.
TOP_P: Schema = optional("number", exclusiveMinimum=0, maximum=1)
SEED: Schema = optional("integer", minimum=SEED_MIN, maximum=SEED_MAX)
TOP_K: Schema = optional("integer", minimum=0, maximum=MAX_TOKENS_LIMIT)
STREAM: Schema = optional(
    "boolean", description="Stream the response (SSE by default, NDJSON on request)."
)
TIMEOUT: Schema = optional(
    "number",
    exclusiveMinimum=0,
    description="Seconds before the request is cut short (504 before the first token, an "
    "in-band error after it). The smaller of this and `x-request-timeout` wins.",
)


def stop_list(max_items: int) -> Schema:
    return {"type": "array", "maxItems": max_items, "items": {"type": "string", "minLength": 1}}


def token_limit(cap: int, *, null: bool = True) -> Schema:
    """Token limits run from 1 to the dialects' bound or the server's cap, if lower."""
    kind = ["integer", "null"] if null else "integer"
    return {"type": kind, "minimum": 1, "maximum": min(cap, MAX_TOKENS_LIMIT)}


def served_model(model_id: str) -> Schema:
    return {
        "type": "string",
        "enum": [model_id],
        "description": "The served model; any other id gets 404.",
    }


def text_parts(kind: str) -> Schema:
    """A string, or an array of `{"type": "text", "text": ...}` parts joined together."""
    part = obj({"type": {"const": "text"}, "text": STRING}, "type", "text")
    return {"anyOf": [STRING, {"type": "array", "items": part}], "description": kind}
