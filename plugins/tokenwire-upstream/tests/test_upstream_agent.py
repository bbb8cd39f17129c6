"""Agent streams through UpstreamBackend: tool calls, reasoning and logprobs from a scripted
upstream become neutral events, in contract order; agent fields reach the upstream."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from tokenwire_upstream import UpstreamBackend
from upstream_support import raw_peer, running_server, sse_response

from tokenwire import (
    ChatMessage,
    Event,
    Finish,
    GenerationRequest,
    InvalidRequestError,
    OutputConstraint,
    TokenDelta,
    TokenLogprob,
    Tool,
    ToolCallDelta,
    ToolChoice,
    Usage,
    create_app,
)

pytestmark = pytest.mark.anyio

TOOLS = (Tool("get_weather"), Tool("get_time"))


def chat(**options: Any) -> GenerationRequest:
    return GenerationRequest(
        model="m", messages=(ChatMessage("user", "Weather and time in Paris?"),), **options
    )


def delta(finish_reason: str | None = None, logprobs: Any = None, **fields: Any) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": fields, "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"object": "chat.completion.chunk", "choices": [choice]}


def call(index: int, arguments: str, id: str | None = None, name: str | None = None) -> Any:
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        fragment |= {"id": id, "type": "function"}
        fragment["function"]["name"] = name
    return [fragment]


def lp(token: str, logprob: float, *top: tuple[str, float]) -> dict[str, Any]:
    alternatives = [{"token": t, "logprob": v} for t, v in top]
    return {"token": token, "logprob": logprob, "top_logprobs": alternatives}


async def events_from(payloads: list[object], request: GenerationRequest) -> list[Event]:
    async with raw_peer(sse_response(payloads)) as peer:
        backend = UpstreamBackend(base_url=peer.url, model="up", check=False)
        await backend.start()
        try:
            return [event async for event in backend.generate(request)]
        finally:
            await backend.close()


async def test_reasoning_text_interleaved_tool_calls_and_logprobs_become_contract_events() -> None:
    payloads: list[object] = [
        delta(role="assistant", content=""),
        delta(reasoning_content="Need both", logprobs=[lp("Need", -0.2, ("Need", -0.2)),
                                                       lp(" both", -0.7, (" both", -0.7))]),
        delta(reasoning=" tools.", logprobs=[lp(" tools.", -0.1, (" tools.", -0.1))]),
        delta(content="Checking.", logprobs=[lp("Checking", -0.3, ("Checking", -0.3)),
                                             lp(".", -0.05, (".", -0.05))]),
        delta(tool_calls=call(0, "", "call_a", "get_weather")),
        delta(tool_calls=call(0, '{"city": ')),
        # The upstream starts call 1 before call 0's arguments are whole, and sends text.
        delta(tool_calls=call(1, '{"tz": "CET"', "call_b", "get_time")),
        delta(content=" "),
        delta(tool_calls=call(0, '"Paris"}')),
        delta(tool_calls=call(1, "}")),
        delta("tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 12}},
        "[DONE]",
    ]  # fmt: skip
    events = await events_from(payloads, chat(tools=TOOLS, logprobs=True, top_logprobs=1))
    assert events == [
        TokenDelta(
            "Need both",
            logprobs=(
                TokenLogprob("Need", -0.2, (("Need", -0.2),)),
                TokenLogprob(" both", -0.7, ((" both", -0.7),)),
            ),
            channel="reasoning",
        ),
        TokenDelta(
            " tools.",
            logprobs=(TokenLogprob(" tools.", -0.1, ((" tools.", -0.1),)),),
            channel="reasoning",
        ),
        TokenDelta(
            "Checking.",
            logprobs=(
                TokenLogprob("Checking", -0.3, (("Checking", -0.3),)),
                TokenLogprob(".", -0.05, ((".", -0.05),)),
            ),
        ),
        ToolCallDelta(0, "call_a", "get_weather", ""),
        ToolCallDelta(0, arguments='{"city": '),
        ToolCallDelta(0, arguments='"Paris"}'),
        # Held while call 0 was open, then all it had gathered at once.
        ToolCallDelta(1, "call_b", "get_time", '{"tz": "CET"'),
        ToolCallDelta(1, arguments="}"),
        TokenDelta(" "),  # held behind call 1, so no call is split
        Finish("tool_calls", Usage(20, 12)),
    ]


async def test_logprobs_the_client_did_not_ask_for_are_not_passed_on() -> None:
    payloads: list[object] = [
        delta(content="x", logprobs=[lp("x", -1.0)]),
        delta("stop"),
        "[DONE]",
    ]
    events = await events_from(payloads, chat())
    assert events[0] == TokenDelta("x")


async def test_a_forced_call_reported_as_stop_finishes_with_tool_calls() -> None:
    # vLLM and OpenAI say "stop" after a named tool_choice; the turn still ended in a call.
    payloads: list[object] = [
        delta(tool_calls=call(0, '{"city": "Paris"}', "call_a", "get_weather")),
        delta("stop"),
        "[DONE]",
    ]
    request = chat(tools=TOOLS, tool_choice=ToolChoice("required", ("get_weather",)))
    events = await events_from(payloads, request)
    assert events == [
        ToolCallDelta(0, "call_a", "get_weather", '{"city": "Paris"}'),
        Finish("tool_calls", Usage(completion_tokens=1)),
    ]


async def test_agent_fields_reach_a_vllm_upstream() -> None:
    async with raw_peer(sse_response([delta("stop"), "[DONE]"])) as peer:
        backend = UpstreamBackend(base_url=peer.url, model="up", check=False, server="vllm")
        await backend.start()
        try:
            request = chat(
                tools=TOOLS,
                tool_choice=ToolChoice("required"),
                constraint=OutputConstraint("regex", pattern="[a-z]+"),
                logprobs=True,
                top_logprobs=2,
                reasoning=False,
            )
            _ = [event async for event in backend.generate(request)]
        finally:
            await backend.close()
    (body,) = peer.bodies
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"]  # type: ignore[index]
    assert body["tool_choice"] == "required"
    assert body["structured_outputs"] == {"regex": "[a-z]+"}
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    assert body["chat_template_kwargs"] == {"enable_thinking": False, "thinking": False}


async def test_a_refused_constraint_never_reaches_the_upstream() -> None:
    async with raw_peer(sse_response([delta("stop"), "[DONE]"])) as peer:
        backend = UpstreamBackend(base_url=peer.url, model="up", check=False)
        await backend.start()
        try:
            with pytest.raises(InvalidRequestError) as caught:
                request = chat(constraint=OutputConstraint("regex", pattern="a+"))
                _ = [event async for event in backend.generate(request)]
        finally:
            await backend.close()
    assert caught.value.param == "response_format"
    assert peer.bodies == []


def test_unknown_server_kind_is_rejected_with_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"generic, vllm, openai.*'sglang'"):
        UpstreamBackend(base_url="http://host", model="m", server="sglang")


async def test_upstream_400_about_tools_is_the_clients_400_with_its_message() -> None:
    message = '"auto" tool choice requires --enable-auto-tool-choice to be set'
    error = json.dumps(
        {"object": "error", "message": message, "type": "BadRequestError", "code": 400}
    ).encode()
    response = (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(error), error)
    )
    async with raw_peer(response) as peer:
        backend = UpstreamBackend(base_url=peer.url, model="up", served_model="front", check=False)
        with running_server(create_app(backend)) as url:
            async with openai.AsyncOpenAI(
                base_url=f"{url}/v1", api_key="unused", max_retries=0
            ) as client:
                with pytest.raises(openai.BadRequestError) as caught:
                    await client.chat.completions.create(
                        model="front",
                        messages=[{"role": "user", "content": "x"}],
                        stream=True,
                    )
    assert caught.value.status_code == 400
    assert message in str(caught.value.body)


async def test_openai_sdk_chat_stream_through_the_proxy_carries_the_upstream_text(
    echo_upstream: str,
) -> None:
    backend = UpstreamBackend(base_url=echo_upstream, model="echo", served_model="front")
    with running_server(create_app(backend)) as url:
        async with openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key="unused", max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model="front",
                messages=[{"role": "user", "content": "round trip through both servers"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            texts, reasons, usage = [], [], None
            async for chunk in stream:
                for choice in chunk.choices:
                    texts.append(choice.delta.content or "")
                    reasons.append(choice.finish_reason)
                usage = chunk.usage or usage
    assert "".join(texts) == "round trip through both servers"
    assert [r for r in reasons if r] == ["stop"]
    assert usage is not None and usage.completion_tokens == 5


async def test_an_anthropic_client_in_front_of_an_openai_upstream_gets_tool_use_blocks(
    echo_upstream: str,
) -> None:
    """Translation by construction: the upstream streams OpenAI `delta.tool_calls`, the plugin
    turns them into neutral events, and the Anthropic dialect renders `tool_use` blocks."""
    import anthropic

    backend = UpstreamBackend(base_url=echo_upstream, model="echo", served_model="front")
    weather = {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    with running_server(create_app(backend)) as url:
        async with (
            anthropic.AsyncAnthropic(base_url=url, api_key="unused", max_retries=0) as client,
            client.messages.stream(
                model="front",
                max_tokens=200,
                messages=[{"role": "user", "content": "Weather in Paris?"}],
                tools=[weather],  # type: ignore[list-item]
                tool_choice={"type": "tool", "name": "get_weather"},
            ) as stream,
        ):
            kinds = [event.type async for event in stream]
            message = await stream.get_final_message()
    assert "input_json" in kinds
    [block] = [b for b in message.content if b.type == "tool_use"]
    assert block.name == "get_weather" and isinstance(block.input["city"], str)  # type: ignore[index]
    assert message.stop_reason == "tool_use"


async def test_a_responses_client_in_front_of_a_chat_upstream_gets_a_function_call_item(
    echo_upstream: str,
) -> None:
    """The Responses dialect parses into the neutral request, the plugin sends it to a Chat
    Completions upstream, and the call comes back as a Responses `function_call` item."""
    backend = UpstreamBackend(base_url=echo_upstream, model="echo", served_model="front")
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
    with running_server(create_app(backend)) as url:
        async with (
            openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
            client.responses.stream(
                model="front",
                input="Weather in Paris? Use get_weather.",
                tools=[tool],  # type: ignore[list-item]
                tool_choice="required",
            ) as stream,
        ):
            kinds = [event.type async for event in stream]
            response = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    [call] = [item for item in response.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    assert response.status == "completed"
