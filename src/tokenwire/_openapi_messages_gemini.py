"""JSON Schemas of the Anthropic Messages and Gemini generateContent dialects — requests,
responses, stream events, token counts and errors — for `openapi.py`.

As in `_openapi_openai`, each request schema admits exactly what the dialect's `parse`
accepts; their agent fields (tools, thinking, JSON output) are in
`_openapi_messages_gemini_agent`.
"""

from __future__ import annotations

from tokenwire._openapi_base import (
    COUNT,
    SEED,
    STREAM,
    STRING,
    TIMEOUT,
    TOP_K,
    TOP_P,
    Schema,
    obj,
    optional,
    ref,
    served_model,
    stop_list,
    text_parts,
    token_limit,
)
from tokenwire._openapi_messages_gemini_agent import (
    anthropic_request_fields,
    anthropic_response_blocks,
    gemini_config_fields,
    gemini_config_rules,
    gemini_contents,
    gemini_request_fields,
    gemini_response_parts,
    gemini_schema_schema,
)
from tokenwire.dialects.anthropic import MAX_STOP_SEQUENCES as ANTHROPIC_MAX_STOPS
from tokenwire.dialects.gemini import MAX_STOP_SEQUENCES as GEMINI_MAX_STOPS


def anthropic_schemas(model_id: str, max_tokens: int) -> dict[str, Schema]:
    """Messages: request, message, stream events and the error."""
    content = text_parts("Text, or an array of text blocks.")
    return {
        # What a Messages request says of its prompt, and nothing the count ignores.
        "MessagesCountTokensRequest": obj(
            {
                "model": served_model(model_id),
                **anthropic_request_fields(),
                "system": {"anyOf": [content, {"type": "null"}]},
            },
            "model",
            "messages",
        ),
        "MessageTokensCount": obj({"input_tokens": COUNT}, "input_tokens"),
        "MessagesRequest": obj(
            {
                "model": served_model(model_id),
                "max_tokens": token_limit(max_tokens, null=False),
                **anthropic_request_fields(),
                "system": {"anyOf": [content, {"type": "null"}]},
                "temperature": optional("number", minimum=0, maximum=1),
                "top_p": TOP_P,
                "top_k": TOP_K,
                "stop_sequences": {"anyOf": [stop_list(ANTHROPIC_MAX_STOPS), {"type": "null"}]},
                "stream": STREAM,
                "timeout": TIMEOUT,
            },
            "model",
            "max_tokens",
            "messages",
        ),
        "Message": obj(
            {
                "id": STRING,
                "type": {"const": "message"},
                "role": {"const": "assistant"},
                "model": STRING,
                "content": {"type": "array", "items": anthropic_response_blocks()},
                "stop_reason": {"enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use"]},
                "stop_sequence": optional("string"),
                "usage": obj(
                    {
                        "input_tokens": COUNT,
                        "output_tokens": COUNT,
                        "cache_read_input_tokens": COUNT,
                    },
                    "input_tokens",
                    "output_tokens",
                ),
            },
            "id",
            "type",
            "role",
            "model",
            "content",
            "stop_reason",
            "stop_sequence",
            "usage",
        ),
        "MessageStreamEvent": obj(
            {
                "type": {
                    "enum": [
                        "message_start",
                        "content_block_start",
                        "ping",
                        "content_block_delta",
                        "content_block_stop",
                        "message_delta",
                        "message_stop",
                        "error",
                    ]
                }
            },
            "type",
        ),
        "AnthropicError": obj(
            {
                "type": {"const": "error"},
                "error": obj({"type": STRING, "message": STRING}, "type", "message"),
            },
            "type",
            "error",
        ),
    }


def gemini_schemas(max_tokens: int) -> dict[str, Schema]:
    """generateContent: request, response and the error.

    Protobuf JSON also accepts snake_case names (`generation_config`, `max_output_tokens`);
    only the camelCase ones google-genai sends are described, as the camelCase name wins
    when both are sent and a schema cannot say "ignored when the other is present".
    """
    part = obj({"text": STRING}, "text", description="Only text parts are supported.")
    parts = {"type": "array", "items": part}
    # A system instruction's role is not read.
    system = obj({"parts": parts}, "parts")
    config = obj(
        {
            **gemini_config_fields(),
            "candidateCount": {"anyOf": [{"const": 1}, {"type": "null"}]},
            # These three take integral floats (40.0), as protobuf JSON clients send them.
            "maxOutputTokens": token_limit(max_tokens),
            "topK": TOP_K,
            "temperature": optional("number", minimum=0, maximum=2),
            "topP": TOP_P,
            "seed": SEED,
            "stopSequences": {"anyOf": [stop_list(GEMINI_MAX_STOPS), {"type": "null"}]},
        },
        allOf=gemini_config_rules(),
    )
    candidate = obj(
        {
            "content": obj(
                {
                    "role": {"const": "model"},
                    "parts": {"type": "array", "items": gemini_response_parts()},
                },
                "role",
                "parts",
            ),
            "finishReason": {"enum": ["STOP", "MAX_TOKENS"]},
            "index": {"const": 0},
        },
        "content",
    )
    request: Schema = {
        "contents": {"type": "array", "minItems": 1, "items": ref("Content")},
        **gemini_request_fields(),
        "systemInstruction": {"anyOf": [STRING, system, {"type": "null"}]},
        "generationConfig": {"anyOf": [config, {"type": "null"}]},
    }
    return {
        "Content": gemini_contents(),
        "GeminiSchema": gemini_schema_schema(),
        "GenerateContentRequest": obj({**request, "timeout": TIMEOUT}, "contents"),
        # A countTokens body is read as a generateContent one, timeout aside.
        "CountTokensRequest": obj(request, "contents"),
        "CountTokensResponse": obj(
            {
                "totalTokens": COUNT,
                "promptTokensDetails": {
                    "type": "array",
                    "items": obj(
                        {"modality": STRING, "tokenCount": COUNT}, "modality", "tokenCount"
                    ),
                },
            },
            "totalTokens",
        ),
        "GenerateContentResponse": obj(
            {
                "candidates": {"type": "array", "items": candidate, "minItems": 1, "maxItems": 1},
                "usageMetadata": obj(
                    {
                        "promptTokenCount": COUNT,
                        "candidatesTokenCount": COUNT,
                        "totalTokenCount": COUNT,
                        "cachedContentTokenCount": COUNT,
                    },
                    "promptTokenCount",
                    "candidatesTokenCount",
                    "totalTokenCount",
                ),
                "modelVersion": STRING,
                "responseId": STRING,
            },
            "candidates",
            "modelVersion",
            "responseId",
        ),
        "GeminiError": obj(
            {
                "error": obj(
                    {"code": {"type": "integer"}, "message": STRING, "status": STRING},
                    "code",
                    "message",
                    "status",
                )
            },
            "error",
        ),
    }
