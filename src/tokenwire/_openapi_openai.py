"""JSON Schemas of the OpenAI Chat Completions and legacy Completions dialects — requests,
responses, chunks — and of the OpenAI error, for `openapi.py`.

Each request schema states exactly what the dialect's `parse` accepts (see
`dialects/_validate.py`): no stricter, so every valid-by-schema body is accepted, and no
looser, so every body it rejects gets a 4xx. The schemathesis suite checks both directions.
Unknown fields are ignored by every dialect, so no object forbids additional properties.
"""

from __future__ import annotations

from tokenwire import _openapi_openai_agent as agent
from tokenwire._openapi_base import (
    COUNT,
    SEED,
    STREAM,
    STRING,
    TIMEOUT,
    TOP_P,
    Schema,
    obj,
    optional,
    served_model,
    stop_list,
    text_parts,
    token_limit,
)
from tokenwire.dialects._openai_common import MAX_STOP_SEQUENCES as OPENAI_MAX_STOPS

_ONE: Schema = optional(
    "integer", minimum=1, maximum=1, description="Only 1: one choice per request."
)


def _usage_openai() -> Schema:
    return obj(
        {
            "prompt_tokens": COUNT,
            "completion_tokens": COUNT,
            "total_tokens": COUNT,
            "prompt_tokens_details": obj({"cached_tokens": COUNT}, "cached_tokens"),
        },
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    )


def _whole(head: Schema, kind: str, choice: Schema) -> Schema:
    """A whole (not streamed) response: exactly one choice, and the usage."""
    return obj(
        {
            **head,
            "object": {"const": kind},
            "choices": {"type": "array", "items": choice, "minItems": 1, "maxItems": 1},
            "usage": _usage_openai(),
        },
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
    )


def _chunk(head: Schema, kind: str, field: str, value: Schema, logprobs: Schema) -> Schema:
    """A streamed chunk: one choice with a delta (or text), or none in the closing usage chunk."""
    choice = obj(
        {
            "index": {"const": 0},
            field: value,
            "logprobs": logprobs,
            "finish_reason": {"enum": [*agent.FINISH_REASONS, None]},
        },
        "index",
        field,
        "finish_reason",
    )
    return obj(
        {
            **head,
            "object": {"const": kind},
            "choices": {"type": "array", "items": choice, "maxItems": 1},
            "usage": {"anyOf": [_usage_openai(), {"type": "null"}]},
        },
        "id",
        "object",
        "created",
        "model",
        "choices",
    )


def openai_schemas(model_id: str, max_tokens: int) -> dict[str, Schema]:
    """Chat Completions and legacy Completions: requests, responses, chunks and the error."""
    common: Schema = {
        "model": served_model(model_id),
        "stream": STREAM,
        "stream_options": optional("object", properties={"include_usage": optional("boolean")}),
        "temperature": optional("number", minimum=0, maximum=2),
        "top_p": TOP_P,
        "seed": SEED,
        "n": _ONE,
        "stop": {
            "anyOf": [
                {"type": "string", "minLength": 1},
                stop_list(OPENAI_MAX_STOPS),
                {"type": "null"},
            ]
        },
        "timeout": TIMEOUT,
    }
    content = text_parts("Text, or an array of text parts.")
    # An assistant turn may have null or no content (it held only tool calls); others may not.
    message = {
        "anyOf": [
            obj(
                {"role": {"enum": ["system", "developer", "user"]}, "content": content},
                "role",
                "content",
            ),
            obj(
                {
                    "role": {"const": "assistant"},
                    "content": {"anyOf": [content, {"type": "null"}]},
                    "tool_calls": agent.tool_calls_in_messages(),
                },
                "role",
            ),
            agent.tool_message(content),
        ]
    }
    finish = {"enum": agent.FINISH_REASONS}
    legacy_logprobs = agent.legacy_logprobs()
    head = {"id": STRING, "created": {"type": "integer"}, "model": STRING}
    chat_choice = obj(
        {
            "index": {"const": 0},
            "message": agent.chat_message(),
            "logprobs": agent.chat_logprobs(),
            "finish_reason": finish,
        },
        "index",
        "message",
        "finish_reason",
    )
    text_choice = obj(
        {
            "index": {"const": 0},
            "text": STRING,
            "logprobs": legacy_logprobs,
            "finish_reason": {"enum": ["stop", "length"]},
        },
        "index",
        "text",
        "finish_reason",
    )
    return {
        "ChatCompletionRequest": obj(
            {
                **common,
                "messages": {"type": "array", "minItems": 1, "items": message},
                "max_completion_tokens": token_limit(max_tokens),
                "max_tokens": {
                    **token_limit(max_tokens),
                    "description": "Superseded by max_completion_tokens, which wins when both are sent.",
                },
                **agent.chat_request_properties(),
            },
            "model",
            "messages",
            **agent.chat_request_rules(),
        ),
        "ChatCompletion": _whole(head, "chat.completion", chat_choice),
        "ChatCompletionChunk": _chunk(
            head,
            "chat.completion.chunk",
            "delta",
            agent.chat_delta(),
            agent.chat_logprobs(),
        ),
        "CompletionChunk": _chunk(head, "text_completion", "text", STRING, legacy_logprobs),
        "CompletionRequest": obj(
            {
                **common,
                "prompt": {
                    "anyOf": [
                        STRING,
                        {"type": "array", "items": STRING, "minItems": 1, "maxItems": 1},
                    ],
                    "description": "One prompt: a string or an array of exactly one string.",
                },
                "max_tokens": {**token_limit(max_tokens), "default": 16},
                "best_of": _ONE,
                "echo": {"enum": [False, None], "description": "Only false is supported."},
                "logprobs": agent.legacy_logprobs_request(),
            },
            "model",
            "prompt",
        ),
        "Completion": _whole(head, "text_completion", text_choice),
        "OpenAIError": obj(
            {
                "error": obj(
                    {
                        "message": STRING,
                        "type": STRING,
                        "param": optional("string"),
                        "code": optional("string"),
                    },
                    "message",
                    "type",
                )
            },
            "error",
        ),
    }
