"""The OpenAPI 3.1 document of every HTTP endpoint, and the route that serves it (`/openapi.json`).

Built as plain JSON-ready dicts: request schemas state exactly what each dialect accepts,
responses name each dialect's error shape. WebSocket upgrades on the dialect paths have no
OpenAPI form; they are mentioned in the descriptions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tokenwire._openapi_base import Schema
from tokenwire._openapi_dialect_operations import (
    STREAM_NOTE,
    count_operation,
    gemini_model_parameter,
    gemini_operation,
    generation_operation,
)
from tokenwire._openapi_messages_gemini import anthropic_schemas, gemini_schemas
from tokenwire._openapi_openai import openai_schemas
from tokenwire._openapi_operations import (
    cancel_operation,
    health_operation,
    model_get_operation,
    models_list_operation,
    resume_operation,
    text_get_operation,
)
from tokenwire._openapi_responses import responses_schemas
from tokenwire._openapi_stored_responses import stored_response_paths
from tokenwire.dialects._validate import MAX_TOKENS_LIMIT
from tokenwire.limits import Limits

OPENAPI_VERSION = "3.1.0"
ALL_DIALECTS = ("openai-chat", "openai-completions", "openai-responses", "anthropic", "gemini")


def build_openapi(
    model_id: str,
    *,
    dialects: Iterable[str] = ALL_DIALECTS,
    limits: Limits = Limits(),
    cancellation: bool = True,
    metrics: bool = True,
    playground: bool = True,
    resume: bool = False,
    stored_responses: bool = True,
    api_keys: bool = False,
    server_url: str = "/",
) -> dict[str, Any]:
    """The OpenAPI document for a server of `model_id` with these parts switched on.

    Args:
        model_id: the served model; request schemas admit only this id.
        dialects: names of the served dialects (others have no schema here and are skipped).
        limits: the server's limits; a `max_tokens` cap lowers the documented maximum.
        cancellation: document `DELETE /v1/requests/{request_id}`.
        metrics: document `GET /metrics`.
        playground: document `GET /`.
        resume: document `GET /v1/streams/{request_id}` (resumable streams are on).
        stored_responses: document `/v1/responses/{response_id}` (the response store is on).
        api_keys: the server requires keys; the security schemes are then declared.
        server_url: where the API is served (a mount prefix, or "/").
    """
    names = set(dialects)
    cap = limits.max_tokens if limits.max_tokens is not None else MAX_TOKENS_LIMIT
    schemas: dict[str, Schema] = {
        "Model": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": {"type": "string"},
            },
            "required": ["id", "object", "created", "owned_by"],
        },
        **openai_schemas(model_id, cap),
    }
    paths: dict[str, Any] = {
        "/health/live": {
            "get": health_operation("liveness", "Always 200 while the process serves.")
        },
        "/health/ready": {"get": health_operation("readiness", "200 once the backend is ready.")},
        "/health": {
            "get": health_operation(
                "readiness", "The same as `/health/ready`.", operation_id="health"
            )
        },
        "/v1/models": {"get": models_list_operation()},
        "/v1/models/{model_id}": {"get": model_get_operation()},
    }
    if "openai-chat" in names:
        paths["/v1/chat/completions"] = {
            "post": generation_operation(
                "createChatCompletion",
                "OpenAI Chat Completions.",
                "ChatCompletionRequest",
                "ChatCompletion",
                "ChatCompletionChunk",
                "OpenAIError",
                tag="openai",
            )
        }
    if "openai-completions" in names:
        paths["/v1/completions"] = {
            "post": generation_operation(
                "createCompletion",
                "OpenAI legacy Completions (one string prompt).",
                "CompletionRequest",
                "Completion",
                "CompletionChunk",
                "OpenAIError",
                tag="openai",
            )
        }
    if "openai-responses" in names:
        schemas.update(responses_schemas(model_id, cap))
        create = generation_operation(
            "createResponse",
            "OpenAI Responses (text and function-call items; stored, continued and "
            "background responses when the response store is on).",
            "ResponsesRequest",
            "ResponseObject",
            "ResponseStreamEvent",
            "OpenAIError",
            tag="openai",
            sentinel=False,
        )
        create["responses"]["503"]["description"] += (
            " Also: `previous_response_id` names a response this replica does not hold while "
            "the shared response store (Redis) is unreachable."
        )
        paths["/v1/responses"] = {"post": create}
        if stored_responses:
            paths.update(stored_response_paths())
    if "anthropic" in names:
        schemas.update(anthropic_schemas(model_id, cap))
        paths["/v1/messages"] = {
            "post": generation_operation(
                "createMessage",
                "Anthropic Messages.",
                "MessagesRequest",
                "Message",
                "MessageStreamEvent",
                "AnthropicError",
                tag="anthropic",
            )
        }
        paths["/v1/messages/count_tokens"] = {
            "post": count_operation(
                "countMessageTokens",
                "Anthropic token counting: the prompt's tokens as the backend would read them.",
                "MessagesCountTokensRequest",
                "MessageTokensCount",
                "AnthropicError",
                tag="anthropic",
            )
        }
    if "gemini" in names:
        schemas.update(gemini_schemas(cap))
        for version in ("v1beta", "v1"):
            for action, streamed in (("generateContent", False), ("streamGenerateContent", True)):
                paths[f"/{version}/models/{{model}}:{action}"] = {
                    "post": gemini_operation(model_id, version, action, streamed)
                }
            paths[f"/{version}/models/{{model}}:countTokens"] = {
                "post": count_operation(
                    f"countTokens_{version}",
                    f"Gemini countTokens ({version}): the prompt's tokens as the backend would "
                    "read them.",
                    "CountTokensRequest",
                    "CountTokensResponse",
                    "GeminiError",
                    tag="gemini",
                    parameters=[gemini_model_parameter(model_id)],
                )
            }
    if cancellation:
        paths["/v1/requests/{request_id}"] = {"delete": cancel_operation()}
    if resume:
        paths["/v1/streams/{request_id}"] = {"get": resume_operation()}
    if metrics:
        paths["/metrics"] = {"get": text_get_operation("Prometheus metrics.", "text/plain")}
    if playground:
        paths["/"] = {"get": text_get_operation("The playground page.", "text/html")}
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "tokenwire",
            "version": _version(),
            "description": f"Token-by-token streaming for the model `{model_id}` through the "
            "OpenAI, Anthropic and Gemini APIs. " + STREAM_NOTE,
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if api_keys:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "googApiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
        }
        secured: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}, {"googApiKey": []}]
        for path, item in paths.items():
            if path.startswith("/v1"):
                for operation in item.values():
                    operation["security"] = secured
    return document


def openapi_routes(
    model_id: str, *, path: str = "/openapi.json", **options: Any
) -> list[BaseRoute]:
    """`GET /openapi.json` serving `build_openapi(model_id, **options)`.

    The server URL follows the mount prefix the request came through, so a mounted app's
    document points at its own paths.
    """
    documents: dict[str, dict[str, Any]] = {}

    async def serve(request: Request) -> Response:
        prefix = request.scope.get("root_path", "") or "/"
        if prefix not in documents:
            documents[prefix] = build_openapi(model_id, server_url=prefix, **options)
        return JSONResponse(documents[prefix])

    return [Route(path, serve, methods=["GET"], name="openapi")]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tokenwire")
    except PackageNotFoundError:
        return "0"
