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


# Headers an Inference Gateway (Envoy + the endpoint picker) may pass on to a pod:
# kubernetes-sigs/gateway-api-inference-extension docs/proposals/004-endpoint-picker-protocol,
# llm-d/llm-d-router pkg/epp/metadata/consts.go (new x-llm-d-* keys and their x-gateway-*
# aliases) and its session-affinity header, which the picker writes on the response itself.
GATEWAY_HEADERS = {
    "x-gateway-destination-endpoint": "10.0.0.7:8000,10.0.0.8:8000",
    "x-llm-d-inference-objective": "critical",
    "x-gateway-inference-objective": "critical",
    "x-llm-d-inference-fairness-id": "tenant-a",
    "x-gateway-inference-fairness-id": "tenant-a",
    "x-llm-d-model-name-rewrite": "other-model",
    "x-llm-d-slo-ttft-ms": "500",
    "x-session-token": "MTAuMC4wLjc=",
}


def test_a_request_carrying_gateway_headers_is_served_as_without_them() -> None:
    import httpx

    from tests._support.server import running_server
    from tokenwire.backends.echo import EchoBackend

    app = create_app(EchoBackend())
    body = {"model": "echo", "messages": [{"role": "user", "content": "a b c"}]}
    with running_server(app) as url:
        plain = httpx.post(f"{url}/v1/chat/completions", json=body)
        routed = httpx.post(f"{url}/v1/chat/completions", json=body, headers=GATEWAY_HEADERS)
        streamed = httpx.post(
            f"{url}/v1/chat/completions", json={**body, "stream": True}, headers=GATEWAY_HEADERS
        )
    assert plain.status_code == routed.status_code == streamed.status_code == 200
    # The model name is the body's: a rewrite header is the gateway's to apply, not ours.
    assert routed.json()["model"] == "echo"
    assert routed.json()["choices"] == plain.json()["choices"]
    assert streamed.text.rstrip().endswith("data: [DONE]")
    # Nothing of the routing state comes back on the response for a proxy to trip over.
    for response in (routed, streamed):
        assert not {
            name for name in response.headers if name.startswith(("x-gateway-", "x-llm-d-"))
        }
        assert "x-session-token" not in response.headers
    assert set(routed.headers) - {"date"} == set(plain.headers) - {"date"}
