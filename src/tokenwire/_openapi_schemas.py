"""JSON Schemas of each dialect's request bodies, responses and errors, for `openapi.py`.

Each request schema states exactly what the dialect's `parse` accepts (see
`dialects/_validate.py`): no stricter, so every valid-by-schema body is accepted, and no
looser, so every body it rejects gets a 4xx. The schemathesis suite checks both directions.
JSON `null` reads as "absent" for optional fields, hence the `"null"` in their types.
Unknown fields are ignored by every dialect, so no object forbids additional properties.
"""

from __future__ import annotations

from typing import Any

from tokenwire import _openapi_openai_agent as agent
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
from tokenwire.dialects._openai_common import MAX_STOP_SEQUENCES as OPENAI_MAX_STOPS
from tokenwire.dialects._validate import MAX_TOKENS_LIMIT, SEED_MAX, SEED_MIN
from tokenwire.dialects.anthropic import MAX_STOP_SEQUENCES as ANTHROPIC_MAX_STOPS
from tokenwire.dialects.gemini import MAX_STOP_SEQUENCES as GEMINI_MAX_STOPS

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: Schema, required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return {**schema, **extra}


def _optional(kind: str, **constraints: Any) -> Schema:
    return {"type": [kind, "null"], **constraints}


_STRING: Schema = {"type": "string"}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_TOP_P: Schema = _optional("number", exclusiveMinimum=0, maximum=1)
_SEED: Schema = _optional("integer", minimum=SEED_MIN, maximum=SEED_MAX)
_TOP_K: Schema = _optional("integer", minimum=0, maximum=MAX_TOKENS_LIMIT)
_STREAM: Schema = _optional(
    "boolean", description="Stream the response (SSE by default, NDJSON on request)."
)
_ONE: Schema = _optional(
    "integer", minimum=1, maximum=1, description="Only 1: one choice per request."
)

TIMEOUT: Schema = _optional(
    "number",
    exclusiveMinimum=0,
    description="Seconds before the request is cut short (504 before the first token, an "
    "in-band error after it). The smaller of this and `x-request-timeout` wins.",
)


def _stop_list(max_items: int) -> Schema:
    return {"type": "array", "maxItems": max_items, "items": {"type": "string", "minLength": 1}}


def _max_tokens(cap: int, *, nullable: bool = True) -> Schema:
    """Token limits run from 1 to the dialects' bound or the server's cap, if lower."""
    kind = ["integer", "null"] if nullable else "integer"
    return {"type": kind, "minimum": 1, "maximum": min(cap, MAX_TOKENS_LIMIT)}


def _model(model_id: str) -> Schema:
    return {
        "type": "string",
        "enum": [model_id],
        "description": "The served model; any other id gets 404.",
    }


def _text_parts(kind: str) -> Schema:
    """A string, or an array of `{"type": "text", "text": ...}` parts joined together."""
    part = _object({"type": {"const": "text"}, "text": _STRING}, ("type", "text"))
    return {"anyOf": [_STRING, {"type": "array", "items": part}], "description": kind}


def _usage_openai() -> Schema:
    return _object(
        {
            "prompt_tokens": _COUNT,
            "completion_tokens": _COUNT,
            "total_tokens": _COUNT,
            "prompt_tokens_details": _object({"cached_tokens": _COUNT}, ("cached_tokens",)),
        },
        ("prompt_tokens", "completion_tokens", "total_tokens"),
    )


def _chunk(head: Schema, kind: str, field: str, value: Schema, logprobs: Schema) -> Schema:
    """A streamed chunk: one choice with a delta (or text), or none in the closing usage chunk."""
    choice = _object(
        {
            "index": {"const": 0},
            field: value,
            "logprobs": logprobs,
            "finish_reason": {"enum": [*agent.FINISH_REASONS, None]},
        },
        ("index", field, "finish_reason"),
    )
    return _object(
        {
            **head,
            "object": {"const": kind},
            "choices": {"type": "array", "items": choice, "maxItems": 1},
            "usage": {"anyOf": [_usage_openai(), {"type": "null"}]},
        },
        ("id", "object", "created", "model", "choices"),
    )


def openai_schemas(model_id: str, max_tokens: int) -> dict[str, Schema]:
    """Chat Completions and legacy Completions: requests, responses, chunks and the error."""
    common: Schema = {
        "model": _model(model_id),
        "stream": _STREAM,
        "stream_options": _optional("object", properties={"include_usage": _optional("boolean")}),
        "temperature": _optional("number", minimum=0, maximum=2),
        "top_p": _TOP_P,
        "seed": _SEED,
        "n": _ONE,
        "stop": {
            "anyOf": [
                {"type": "string", "minLength": 1},
                _stop_list(OPENAI_MAX_STOPS),
                {"type": "null"},
            ]
        },
        "timeout": TIMEOUT,
    }
    content = _text_parts("Text, or an array of text parts.")
    # An assistant turn may have null or no content (it held only tool calls); others may not.
    message = {
        "anyOf": [
            _object(
                {"role": {"enum": ["system", "developer", "user"]}, "content": content},
                ("role", "content"),
            ),
            _object(
                {
                    "role": {"const": "assistant"},
                    "content": {"anyOf": [content, {"type": "null"}]},
                    "tool_calls": agent.tool_calls_in_messages(),
                },
                ("role",),
            ),
            agent.tool_message(content),
        ]
    }
    finish = {"enum": agent.FINISH_REASONS}
    legacy_logprobs = agent.legacy_logprobs()
    head = {"id": _STRING, "created": {"type": "integer"}, "model": _STRING}
    chat_choice = _object(
        {
            "index": {"const": 0},
            "message": agent.chat_message(),
            "logprobs": agent.chat_logprobs(),
            "finish_reason": finish,
        },
        ("index", "message", "finish_reason"),
    )
    text_choice = _object(
        {
            "index": {"const": 0},
            "text": _STRING,
            "logprobs": legacy_logprobs,
            "finish_reason": {"enum": ["stop", "length"]},
        },
        ("index", "text", "finish_reason"),
    )
    return {
        "ChatCompletionRequest": _object(
            {
                **common,
                "messages": {"type": "array", "minItems": 1, "items": message},
                "max_completion_tokens": _max_tokens(max_tokens),
                "max_tokens": {
                    **_max_tokens(max_tokens),
                    "description": "Superseded by max_completion_tokens, which wins when both are sent.",
                },
                **agent.chat_request_properties(),
            },
            ("model", "messages"),
            **agent.chat_request_rules(),
        ),
        "ChatCompletion": _object(
            {
                **head,
                "object": {"const": "chat.completion"},
                "choices": {"type": "array", "items": chat_choice, "minItems": 1, "maxItems": 1},
                "usage": _usage_openai(),
            },
            ("id", "object", "created", "model", "choices", "usage"),
        ),
        "ChatCompletionChunk": _chunk(
            head,
            "chat.completion.chunk",
            "delta",
            agent.chat_delta(),
            agent.chat_logprobs(),
        ),
        "CompletionChunk": _chunk(head, "text_completion", "text", _STRING, legacy_logprobs),
        "CompletionRequest": _object(
            {
                **common,
                "prompt": {
                    "anyOf": [
                        _STRING,
                        {"type": "array", "items": _STRING, "minItems": 1, "maxItems": 1},
                    ],
                    "description": "One prompt: a string or an array of exactly one string.",
                },
                "max_tokens": {**_max_tokens(max_tokens), "default": 16},
                "best_of": _ONE,
                "echo": {"enum": [False, None], "description": "Only false is supported."},
                "logprobs": agent.legacy_logprobs_request(),
            },
            ("model", "prompt"),
        ),
        "Completion": _object(
            {
                **head,
                "object": {"const": "text_completion"},
                "choices": {"type": "array", "items": text_choice, "minItems": 1, "maxItems": 1},
                "usage": _usage_openai(),
            },
            ("id", "object", "created", "model", "choices", "usage"),
        ),
        "OpenAIError": _object(
            {
                "error": _object(
                    {
                        "message": _STRING,
                        "type": _STRING,
                        "param": _optional("string"),
                        "code": _optional("string"),
                    },
                    ("message", "type"),
                )
            },
            ("error",),
        ),
    }


def anthropic_schemas(model_id: str, max_tokens: int) -> dict[str, Schema]:
    """Messages: request, message, stream events and the error."""
    content = _text_parts("Text, or an array of text blocks.")
    return {
        # What a Messages request says of its prompt, and nothing the count ignores.
        "MessagesCountTokensRequest": _object(
            {
                "model": _model(model_id),
                **anthropic_request_fields(),
                "system": {"anyOf": [content, {"type": "null"}]},
            },
            ("model", "messages"),
        ),
        "MessageTokensCount": _object({"input_tokens": _COUNT}, ("input_tokens",)),
        "MessagesRequest": _object(
            {
                "model": _model(model_id),
                "max_tokens": _max_tokens(max_tokens, nullable=False),
                **anthropic_request_fields(),
                "system": {"anyOf": [content, {"type": "null"}]},
                "temperature": _optional("number", minimum=0, maximum=1),
                "top_p": _TOP_P,
                "top_k": _TOP_K,
                "stop_sequences": {"anyOf": [_stop_list(ANTHROPIC_MAX_STOPS), {"type": "null"}]},
                "stream": _STREAM,
                "timeout": TIMEOUT,
            },
            ("model", "max_tokens", "messages"),
        ),
        "Message": _object(
            {
                "id": _STRING,
                "type": {"const": "message"},
                "role": {"const": "assistant"},
                "model": _STRING,
                "content": {"type": "array", "items": anthropic_response_blocks()},
                "stop_reason": {"enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use"]},
                "stop_sequence": _optional("string"),
                "usage": _object(
                    {
                        "input_tokens": _COUNT,
                        "output_tokens": _COUNT,
                        "cache_read_input_tokens": _COUNT,
                    },
                    ("input_tokens", "output_tokens"),
                ),
            },
            ("id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"),
        ),
        "MessageStreamEvent": _object(
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
            ("type",),
        ),
        "AnthropicError": _object(
            {
                "type": {"const": "error"},
                "error": _object({"type": _STRING, "message": _STRING}, ("type", "message")),
            },
            ("type", "error"),
        ),
    }


def gemini_schemas(max_tokens: int) -> dict[str, Schema]:
    """generateContent: request, response and the error.

    Protobuf JSON also accepts snake_case names (`generation_config`, `max_output_tokens`);
    only the camelCase ones google-genai sends are described, as the camelCase name wins
    when both are sent and a schema cannot say "ignored when the other is present".
    """
    part = _object({"text": _STRING}, ("text",), description="Only text parts are supported.")
    parts = {"type": "array", "items": part}
    # A system instruction's role is not read.
    system = _object({"parts": parts}, ("parts",))
    config = _object(
        {
            **gemini_config_fields(),
            "candidateCount": {"anyOf": [{"const": 1}, {"type": "null"}]},
            # These three take integral floats (40.0), as protobuf JSON clients send them.
            "maxOutputTokens": _max_tokens(max_tokens),
            "topK": _TOP_K,
            "temperature": _optional("number", minimum=0, maximum=2),
            "topP": _TOP_P,
            "seed": _SEED,
            "stopSequences": {"anyOf": [_stop_list(GEMINI_MAX_STOPS), {"type": "null"}]},
        },
        allOf=gemini_config_rules(),
    )
    candidate = _object(
        {
            "content": _object(
                {
                    "role": {"const": "model"},
                    "parts": {"type": "array", "items": gemini_response_parts()},
                },
                ("role", "parts"),
            ),
            "finishReason": {"enum": ["STOP", "MAX_TOKENS"]},
            "index": {"const": 0},
        },
        ("content",),
    )
    request: Schema = {
        "contents": {"type": "array", "minItems": 1, "items": ref("Content")},
        **gemini_request_fields(),
        "systemInstruction": {"anyOf": [_STRING, system, {"type": "null"}]},
        "generationConfig": {"anyOf": [config, {"type": "null"}]},
    }
    return {
        "Content": gemini_contents(),
        "GeminiSchema": gemini_schema_schema(),
        "GenerateContentRequest": _object({**request, "timeout": TIMEOUT}, ("contents",)),
        # A countTokens body is read as a generateContent one, timeout aside.
        "CountTokensRequest": _object(request, ("contents",)),
        "CountTokensResponse": _object(
            {
                "totalTokens": _COUNT,
                "promptTokensDetails": {
                    "type": "array",
                    "items": _object(
                        {"modality": _STRING, "tokenCount": _COUNT}, ("modality", "tokenCount")
                    ),
                },
            },
            ("totalTokens",),
        ),
        "GenerateContentResponse": _object(
            {
                "candidates": {"type": "array", "items": candidate, "minItems": 1, "maxItems": 1},
                "usageMetadata": _object(
                    {
                        "promptTokenCount": _COUNT,
                        "candidatesTokenCount": _COUNT,
                        "totalTokenCount": _COUNT,
                        "cachedContentTokenCount": _COUNT,
                    },
                    ("promptTokenCount", "candidatesTokenCount", "totalTokenCount"),
                ),
                "modelVersion": _STRING,
                "responseId": _STRING,
            },
            ("candidates", "modelVersion", "responseId"),
        ),
        "GeminiError": _object(
            {
                "error": _object(
                    {"code": {"type": "integer"}, "message": _STRING, "status": _STRING},
                    ("code", "message", "status"),
                )
            },
            ("error",),
        ),
    }
