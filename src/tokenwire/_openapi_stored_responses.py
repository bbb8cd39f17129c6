"""The OpenAPI operations of stored responses (`/v1/responses/{response_id}`: retrieve,
delete, cancel), for `openapi.py`; served when the response store is on."""

from __future__ import annotations

from typing import Any

from tokenwire._openapi_base import STRING, const, json_response, obj, ref


def stored_response_paths() -> dict[str, Any]:
    """`GET`/`DELETE /v1/responses/{response_id}` and `POST .../cancel`."""
    error = ref("OpenAIError")
    response = ref("ResponseObject")
    path_id = {"name": "response_id", "in": "path", "required": True, "schema": STRING}
    not_found = json_response(
        error, "No stored response with this id (never stored, expired, deleted)."
    )
    unavailable = json_response(
        error,
        "This replica does not hold the response and the shared response store (Redis) is "
        "unreachable, so whether it exists cannot be known; try again.",
    )
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
                    "text/event-stream": {"schema": ref("ResponseStreamEvent")},
                },
            },
            "400": json_response(
                error, "stream=true for a response that was not run in background."
            ),
            "404": not_found,
            "503": unavailable,
        },
    }
    delete = {
        "operationId": "deleteResponse",
        "summary": "Forget a stored response (a running background one is cancelled).",
        "tags": ["openai"],
        "parameters": [path_id],
        "responses": {
            "200": json_response(
                obj(
                    {"id": STRING, "object": const("response"), "deleted": {"const": True}},
                    "id",
                    "object",
                    "deleted",
                ),
                "Deleted.",
            ),
            "404": not_found,
            "503": json_response(
                error,
                "The shared response store (Redis) is unreachable, so the delete cannot reach "
                "every replica; nothing was deleted there; try again.",
            ),
        },
    }
    cancel = {
        "operationId": "cancelResponse",
        "summary": "Stop a queued or running background response within one decode step.",
        "tags": ["openai"],
        "parameters": [path_id],
        "responses": {
            "200": json_response(response, "The response, status cancelled."),
            "400": json_response(error, "Not a background response, or it has finished."),
            "404": not_found,
            "503": unavailable,
        },
    }
    return {
        "/v1/responses/{response_id}": {"get": retrieve, "delete": delete},
        "/v1/responses/{response_id}/cancel": {"post": cancel},
    }
