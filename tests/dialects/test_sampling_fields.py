"""Every dialect keeps an omitted sampling field apart from one sent as its neutral value."""

from __future__ import annotations

from typing import Any

import pytest

from tokenwire.dialects import (
    AnthropicDialect,
    GeminiDialect,
    OpenAIChatDialect,
    OpenAICompletionsDialect,
)
from tokenwire.requests import GenerationRequest

MODEL = "tw-model"
USER = [{"role": "user", "content": "hi"}]


def openai_chat(sampling: dict[str, Any]) -> GenerationRequest:
    body = {"model": MODEL, "messages": USER, **sampling}
    return OpenAIChatDialect().parse(body, {}, "req_1", MODEL).request


def openai_completions(sampling: dict[str, Any]) -> GenerationRequest:
    body = {"model": MODEL, "prompt": "hi", **sampling}
    return OpenAICompletionsDialect().parse(body, {}, "req_1", MODEL).request


def anthropic(sampling: dict[str, Any]) -> GenerationRequest:
    body = {"model": MODEL, "max_tokens": 5, "messages": USER, **sampling}
    return AnthropicDialect().parse(body, {}, "req_1", MODEL).request


def gemini(sampling: dict[str, Any]) -> GenerationRequest:
    names = {"temperature": "temperature", "top_p": "topP", "top_k": "topK"}
    config = {names[k]: v for k, v in sampling.items()}
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": config}
    target = {"target": f"{MODEL}:generateContent"}
    return GeminiDialect().parse(body, target, "req_1", MODEL).request


# OpenAI has no top_k.
PARSERS = [(openai_chat, False), (openai_completions, False), (anthropic, True), (gemini, True)]
IDS = ["openai_chat", "openai_completions", "anthropic", "gemini"]


@pytest.mark.parametrize(("parse", "has_top_k"), PARSERS, ids=IDS)
def test_omitted_sampling_fields_read_as_none(parse: Any, has_top_k: bool) -> None:
    request = parse({})
    assert (request.temperature, request.top_p, request.top_k) == (None, None, None)


@pytest.mark.parametrize(("parse", "has_top_k"), PARSERS, ids=IDS)
def test_sent_neutral_values_are_kept_as_sent(parse: Any, has_top_k: bool) -> None:
    sent: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0, **({"top_k": 0} if has_top_k else {})}
    request = parse(sent)
    assert (request.temperature, request.top_p) == (1.0, 1.0)
    assert request.top_k == (0 if has_top_k else None)
