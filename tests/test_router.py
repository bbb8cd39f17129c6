"""`build_router`'s pipeline: a backend that writes tool calls as markup gets the parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from functools import partial

import pytest

from tests._support.asgi import call_http
from tests._support.backends import ScriptedBackend
from tokenwire import Event, GenerationRequest, create_app
from tokenwire.events import Finish, ToolCallDelta
from tokenwire.interfaces import Generate
from tokenwire.middlewares.tool_calls import ToolCallParserMiddleware
from tokenwire.requests import Tool

CHAT = {"model": "scripted", "messages": [{"role": "user", "content": "x"}]}
MARKUP = ["<tool_call>", '{"name": "f", "arguments": {}}', "</tool_call>"]


class HermesBackend(ScriptedBackend):
    tool_call_format = "hermes"


class ToolsProbe:
    """Outermost: offers a tool on every request and records the tool calls and finish reasons
    that come up (keeping both from the dialect: this tests the pipeline, not its rendering)."""

    calls: list[str] = []
    reasons: list[str] = []

    def __init__(self, app: Generate) -> None:
        self.app = app

    async def __call__(self, request: GenerationRequest) -> AsyncIterator[Event]:
        async for event in self.app(replace(request, tools=(Tool("f"),))):
            if isinstance(event, ToolCallDelta):
                if event.name is not None:
                    ToolsProbe.calls.append(event.name)
                continue
            if isinstance(event, Finish):
                ToolsProbe.reasons.append(event.reason)
                event = replace(event, reason="stop")
            yield event


@pytest.fixture(autouse=True)
def fresh_probe() -> None:
    ToolsProbe.calls, ToolsProbe.reasons = [], []


@pytest.mark.anyio
async def test_a_backend_declaring_tool_call_format_gets_the_parser_innermost() -> None:
    app = create_app(HermesBackend(MARKUP), middlewares=[ToolsProbe])
    reply = await call_http(app, "/v1/chat/completions", CHAT)
    assert reply.status == 200
    assert (ToolsProbe.calls, ToolsProbe.reasons) == (["f"], ["tool_calls"])
    assert reply.json()["choices"][0]["message"]["content"] in ("", None)


@pytest.mark.anyio
async def test_a_configured_parser_is_not_doubled_and_its_options_win() -> None:
    mistral = partial(ToolCallParserMiddleware, format="mistral")
    app = create_app(HermesBackend(MARKUP), middlewares=[ToolsProbe, mistral])
    reply = await call_http(app, "/v1/chat/completions", CHAT)
    assert ToolsProbe.calls == []  # parsed as Mistral's markup: none, so the text stays
    assert reply.json()["choices"][0]["message"]["content"] == "".join(MARKUP)


@pytest.mark.anyio
async def test_a_backend_without_markup_gets_no_parser() -> None:
    app = create_app(ScriptedBackend(MARKUP), middlewares=[ToolsProbe])
    reply = await call_http(app, "/v1/chat/completions", CHAT)
    assert ToolsProbe.calls == []
    assert reply.json()["choices"][0]["message"]["content"] == "".join(MARKUP)
