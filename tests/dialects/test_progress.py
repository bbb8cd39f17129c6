"""Progress notes are for middlewares: every dialect renders them as nothing."""

from __future__ import annotations

import pytest

from tokenwire.dialects import (
    AnthropicDialect,
    GeminiDialect,
    OpenAIChatDialect,
    OpenAICompletionsDialect,
)
from tokenwire.events import Progress
from tokenwire.interfaces import Dialect

MODEL = "tw-model"
BODIES = {
    "openai-chat": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    "openai-completions": {"model": MODEL, "prompt": "hi"},
    "anthropic": {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    "gemini": {"contents": [{"parts": [{"text": "hi"}]}]},
}


@pytest.mark.parametrize(
    "dialect",
    [OpenAIChatDialect(), OpenAICompletionsDialect(), AnthropicDialect(), GeminiDialect()],
    ids=lambda d: d.name,
)
@pytest.mark.parametrize("phase", ["queued", "prefill", "decode"])
def test_progress_events_render_no_payloads(dialect: Dialect, phase: str) -> None:
    target = {"target": f"{MODEL}:streamGenerateContent"}
    exchange = dialect.parse(BODIES[dialect.name], target, "req_1", MODEL)
    assert exchange.render(Progress(phase)) == []  # type: ignore[arg-type]
