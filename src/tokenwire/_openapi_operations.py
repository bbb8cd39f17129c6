"""OpenAPI operations of tokenwire's own routes: health, models, cancel, resume, pages."""

from __future__ import annotations

from tokenwire._openapi_base import SSE, Schema, json_response, ref


def health_operation(kind: str, description: str, operation_id: str | None = None) -> Schema:
    body = {
        "type": "object",
        "properties": {"status": {"type": "string"}, "model": {"type": "string"}},
        "required": ["status"],
    }
    responses = {"200": json_response(body, description)}
    if kind == "readiness":
        responses["503"] = json_response(body, "The backend is starting, draining or unhealthy.")
    return {"operationId": operation_id or kind, "tags": ["health"], "responses": responses}


def models_list_operation() -> Schema:
    body = {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref("Model")},
        },
        "required": ["object", "data"],
    }
    return {
        "operationId": "listModels",
        "tags": ["openai"],
        "responses": {"200": json_response(body, "The served model.")},
    }


def model_get_operation() -> Schema:
    return {
        "operationId": "retrieveModel",
        "tags": ["openai"],
        "parameters": [
            {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {
            "200": json_response(ref("Model"), "The model."),
            "404": json_response(ref("OpenAIError"), "No such model."),
        },
    }


def cancel_operation() -> Schema:
    done = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "cancelled": {"const": True}},
        "required": ["id", "cancelled"],
    }
    return {
        "operationId": "cancelRequest",
        "summary": "Cancel running requests by id (for proxies that hide disconnects).",
        "tags": ["tokenwire"],
        "parameters": [
            {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {
            "200": json_response(done, "Every running request with this id was cancelled."),
            "404": json_response(ref("OpenAIError"), "No running request has this id."),
            "503": json_response(
                ref("OpenAIError"),
                "The request does not run on this replica and the shared stream store is "
                "unreachable, so whether another replica runs it cannot be known.",
            ),
        },
    }


def resume_operation() -> Schema:
    event = {
        "type": "object",
        "properties": {
            "data": {"type": "string"},
            "event": {"type": "string"},
            "id": {"type": "string"},
        },
        "required": ["data"],
    }
    return {
        "operationId": "resumeStream",
        "summary": "Continue a dropped OpenAI or Anthropic SSE stream after `Last-Event-ID`.",
        "tags": ["tokenwire"],
        "parameters": [
            {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "last-event-id",
                "in": "header",
                "required": False,
                "description": "The last `id:` received, `<request id>:<event number>`.",
                "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}:[0-9]{1,9}$"},
            },
        ],
        "responses": {
            "200": {"description": "The rest of the stream.", "content": {SSE: {"schema": event}}},
            "400": json_response(
                ref("OpenAIError"), "`Last-Event-ID` is malformed or names another stream."
            ),
            "404": json_response(
                ref("OpenAIError"), "No such stream, or the event is no longer kept."
            ),
        },
    }


def text_get_operation(summary: str, media_type: str) -> Schema:
    return {
        "summary": summary,
        "tags": ["tokenwire"],
        "responses": {
            "200": {
                "description": summary,
                "content": {media_type: {"schema": {"type": "string"}}},
            }
        },
    }
