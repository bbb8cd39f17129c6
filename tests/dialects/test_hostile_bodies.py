"""No body makes a dialect raise anything but a 4xx TokenwireError (never a 500)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tokenwire.dialects import (
    AnthropicDialect,
    GeminiDialect,
    OpenAIChatDialect,
    OpenAICompletionsDialect,
    OpenAIResponsesDialect,
)
from tokenwire.errors import TokenwireError
from tokenwire.interfaces import Dialect

MODEL = "tw-model"
SECRET = "SECRET-PROMPT"
BAD_VALUES: list[Any] = [
    None,
    [],
    {},
    [[]],
    [{}],
    "",
    "x",
    SECRET,
    0,
    -1,
    1.5,
    10**30,
    True,
    float("nan"),
    float("inf"),
    {"type": "text"},
    [{"type": "text", "text": []}],
]
VALID: list[tuple[Dialect, dict[str, Any], str]] = [
    (
        OpenAIChatDialect(),
        {
            "model": MODEL,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [
                {"role": "system", "content": SECRET},
                {"role": "user", "content": [{"type": "text", "text": SECRET}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": SECRET},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": SECRET},
            ],
            "max_tokens": 5,
            "max_completion_tokens": 6,
            "temperature": 1,
            "top_p": 1,
            "n": 1,
            "seed": 1,
            "stop": ["a"],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "description": SECRET,
                        "parameters": {"type": "object", "properties": {}},
                        "strict": True,
                    },
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": False,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": True},
            },
            "logprobs": True,
            "top_logprobs": 2,
            "reasoning_effort": "low",
            "chat_template_kwargs": {"enable_thinking": True},
        },
        "",
    ),
    (
        OpenAICompletionsDialect(),
        {
            "model": MODEL,
            "prompt": [SECRET],
            "max_tokens": 5,
            "stop": "a",
            "best_of": 1,
            "echo": False,
            "stream": False,
            "logprobs": 2,
        },
        "",
    ),
    (
        OpenAIResponsesDialect(),
        {
            "model": MODEL,
            "stream": True,
            "instructions": SECRET,
            "input": [
                {"role": "developer", "content": SECRET},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": SECRET}],
                },
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": SECRET},
                {"type": "function_call_output", "call_id": "c1", "output": SECRET},
            ],
            "tools": [
                {
                    "type": "function",
                    "name": "f",
                    "description": SECRET,
                    "parameters": {"type": "object", "properties": {}},
                    "strict": True,
                }
            ],
            "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": False,
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
            "reasoning": {"effort": "low"},
            "include": ["message.output_text.logprobs"],
            "top_logprobs": 2,
            "max_output_tokens": 5,
            "temperature": 1,
            "top_p": 1,
            "metadata": {"k": "v"},
            "store": False,
            "background": False,
        },
        "",
    ),
    (
        AnthropicDialect(),
        {
            "model": MODEL,
            "max_tokens": 5,
            "system": [{"type": "text", "text": SECRET}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": SECRET}]}],
            "stop_sequences": ["a"],
            "temperature": 0.5,
            "top_p": 0.5,
            "top_k": 3,
            "stream": True,
        },
        "",
    ),
    (
        GeminiDialect(),
        {
            "contents": [{"role": "user", "parts": [{"text": SECRET}]}],
            "systemInstruction": {"parts": [{"text": SECRET}]},
            "generationConfig": {
                "maxOutputTokens": 5,
                "temperature": 1,
                "topP": 1,
                "topK": 1,
                "seed": 1,
                "stopSequences": ["a"],
                "candidateCount": 1,
            },
        },
        f"{MODEL}:generateContent",
    ),
    (
        AnthropicDialect(),
        {
            "model": MODEL,
            "max_tokens": 5,
            "tools": [
                {
                    "name": "f",
                    "description": SECRET,
                    "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                    "strict": True,
                }
            ],
            "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
            "messages": [
                {"role": "user", "content": SECRET},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": SECRET, "signature": "s"},
                        {"type": "text", "text": SECRET},
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": SECRET}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "text", "text": SECRET}],
                            "is_error": False,
                        },
                        {"type": "text", "text": SECRET},
                    ],
                },
            ],
        },
        "",
    ),
    (
        GeminiDialect(),
        {
            "contents": [
                {"role": "user", "parts": [{"text": SECRET}]},
                {
                    "role": "model",
                    "parts": [
                        {"text": SECRET, "thought": True},
                        {"functionCall": {"name": "f", "args": {"a": SECRET}, "id": "c1"}},
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "f", "response": {"r": SECRET}, "id": "c1"}}
                    ],
                },
            ],
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "f",
                            "description": SECRET,
                            "parameters": {
                                "type": "OBJECT",
                                "properties": {"a": {"type": "STRING", "nullable": True}},
                                "items": {"type": "STRING"},
                                "anyOf": [{"type": "OBJECT"}],
                            },
                        },
                        {"name": "g", "parametersJsonSchema": {"type": "object"}},
                    ]
                }
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
            "generationConfig": {
                "maxOutputTokens": 5,
                "responseMimeType": "application/json",
                "responseSchema": {"type": "ARRAY", "items": {"type": "STRING"}},
                "thinkingConfig": {"thinkingBudget": 128, "includeThoughts": True},
            },
        },
        f"{MODEL}:generateContent",
    ),
]


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and index path inside `document`."""
    items = (
        document.items()
        if isinstance(document, dict)
        else enumerate(document)
        if isinstance(document, list)
        else ()
    )
    for key, value in items:
        yield (*prefix, key)
        yield from paths(value, (*prefix, key))


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    mutated = copy.deepcopy(document)
    target = mutated
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return mutated


def cases() -> Iterator[Any]:
    for dialect, document, target in VALID:
        for path in paths(document):
            for value in BAD_VALUES:
                if path == ("model",) and value == SECRET:
                    continue  # the model name is echoed on purpose: it is not prompt text
                yield pytest.param(
                    dialect,
                    replaced(document, path, value),
                    target,
                    id=f"{dialect.name}-{path}-{value!r}",
                )


@pytest.mark.parametrize(
    ("dialect", "document", "target"), [pytest.param(d, b, t, id=d.name) for d, b, t in VALID]
)
def test_the_valid_bodies_parse(dialect: Dialect, document: dict[str, Any], target: str) -> None:
    exchange = dialect.parse(document, {"target": target}, "req_1", MODEL)
    assert exchange.request.max_tokens == (6 if dialect.name == "openai-chat" else 5)


@pytest.mark.parametrize(("dialect", "document", "target"), list(cases()))
def test_a_mutated_body_parses_or_raises_a_4xx_that_hides_the_prompt(
    dialect: Dialect, document: dict[str, Any], target: str
) -> None:
    try:
        dialect.parse(document, {"target": target}, "req_1", MODEL)
    except TokenwireError as error:
        assert error.status_code in (400, 404)
        assert SECRET not in error.message
        rendered = dialect.render_error(error)
        assert rendered.status_code == error.status_code


@pytest.mark.parametrize("dialect", [d for d, _, _ in VALID], ids=lambda d: d.name)
@pytest.mark.parametrize(
    "document", [{}, {"model": []}, {"model": {}}, {"messages": {}}, {"contents": {}}]
)
def test_bare_or_malformed_bodies_raise_a_4xx(dialect: Dialect, document: dict[str, Any]) -> None:
    with pytest.raises(TokenwireError) as caught:
        dialect.parse(document, {"target": f"{MODEL}:generateContent"}, "req_1", MODEL)
    assert caught.value.status_code in (400, 404)
