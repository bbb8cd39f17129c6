"""A tokenwire server in front of UpstreamBackend: dialect translation, errors, disconnects."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import anyio
import httpx
import openai
import pytest
from tokenwire_upstream import UpstreamBackend
from upstream_support import ScriptedBackend, running_server

from tokenwire import QueueFullError, create_app, load_plugin
from tokenwire.cli import build_backend
from tokenwire.config import ServeConfig, parse_option

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def front(echo_upstream: str) -> Iterator[str]:
    """tokenwire + UpstreamBackend, serving the echo upstream as `claude-echo`."""
    backend = UpstreamBackend(base_url=echo_upstream, model="echo", served_model="claude-echo")
    with running_server(create_app(backend)) as url:
        yield url


async def test_anthropic_sdk_streams_messages_from_an_openai_upstream(front: str) -> None:
    async with (
        anthropic.AsyncAnthropic(base_url=front, api_key="unused", max_retries=0) as client,
        client.messages.stream(
            model="claude-echo",
            max_tokens=100,
            messages=[{"role": "user", "content": "translated by the front server"}],
        ) as stream,
    ):
        pieces = [text async for text in stream.text_stream]
        message = await stream.get_final_message()
    assert "".join(pieces) == "translated by the front server"
    assert len(pieces) == 5
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 5)


async def test_anthropic_max_tokens_stop_reason_comes_from_upstream_length(front: str) -> None:
    async with (
        anthropic.AsyncAnthropic(base_url=front, api_key="unused", max_retries=0) as client,
        client.messages.stream(
            model="claude-echo", max_tokens=2, messages=[{"role": "user", "content": "a b c d"}]
        ) as stream,
    ):
        message = await stream.get_final_message()
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == "a b"  # type: ignore[union-attr]


async def test_openai_completions_stream_with_usage_through_the_proxy(front: str) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{front}/v1", api_key="unused", max_retries=0
    ) as client:
        stream = await client.completions.create(
            model="claude-echo",
            prompt="raw prompt text here",
            stream=True,
            stream_options={"include_usage": True},
        )
        texts, usage = [], None
        async for chunk in stream:
            texts += [choice.text for choice in chunk.choices]
            usage = chunk.usage or usage
    assert "".join(texts) == "raw prompt text here"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (4, 4)


async def test_unknown_upstream_model_is_a_404_in_the_front_dialect(echo_upstream: str) -> None:
    backend = UpstreamBackend(base_url=echo_upstream, model="nope", check=False)
    with running_server(create_app(backend)) as url:
        async with anthropic.AsyncAnthropic(
            base_url=url, api_key="unused", max_retries=0
        ) as client:
            with pytest.raises(anthropic.NotFoundError) as caught:
                await client.messages.create(
                    model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}]
                )
        async with httpx.AsyncClient(base_url=url) as raw:
            response = await raw.post(
                "/v1/chat/completions",
                json={
                    "model": "nope",
                    "stream": True,
                    "messages": [{"role": "user", "content": "x"}],
                },
            )
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


async def test_upstream_429_is_a_429_with_retry_after_at_the_front() -> None:
    upstream = ScriptedBackend(["x"], fail_at=0, error=QueueFullError("full", retry_after=4))
    with running_server(create_app(upstream)) as up_url:
        backend = UpstreamBackend(base_url=up_url, model="scripted")
        with running_server(create_app(backend)) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.post(
                    "/v1/messages",
                    json={"model": "scripted", "max_tokens": 5, "stream": True,
                          "messages": [{"role": "user", "content": "x"}]},
                )  # fmt: skip
    assert response.status_code == 429
    assert response.headers["retry-after"] == "4"
    assert response.json()["error"]["type"] == "rate_limit_error"


async def test_upstream_error_mid_stream_becomes_the_front_dialects_in_band_error() -> None:
    upstream = ScriptedBackend(["a", " b", " c"], fail_at=2)
    with running_server(create_app(upstream)) as up_url:
        backend = UpstreamBackend(base_url=up_url, model="scripted")
        with running_server(create_app(backend)) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.post(
                    "/v1/messages",
                    json={"model": "scripted", "max_tokens": 5, "stream": True,
                          "messages": [{"role": "user", "content": "x"}]},
                )  # fmt: skip
    assert response.status_code == 200  # tokens were sent before the failure
    events = [
        line.removeprefix("event: ")
        for line in response.text.splitlines()
        if line.startswith("event: ")
    ]
    assert events.count("content_block_delta") == 2
    assert events[-1] == "error"
    assert "secret" not in response.text


async def test_client_disconnect_at_the_front_cancels_the_upstream_stream() -> None:
    # 500 tokens 20 ms apart: ten seconds if nobody cancels it.
    upstream = ScriptedBackend([f" t{i}" for i in range(500)], delay=0.02)
    with running_server(create_app(upstream)) as up_url:
        backend = UpstreamBackend(base_url=up_url, model="scripted")
        with running_server(create_app(backend)) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                body = {
                    "model": "scripted",
                    "stream": True,
                    "messages": [{"role": "user", "content": "x"}],
                }
                async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    tokens = 0
                    async for line in response.aiter_lines():
                        if line.startswith("data: {") and '"content":" t' in line:
                            tokens += 1
                            if tokens == 3:
                                break
            left = time.monotonic()  # the client's connection is closed here
            # The upstream runs in uvicorn's thread: wait for its event from a worker thread.
            closed = await anyio.to_thread.run_sync(upstream.closed.wait, 3.0)
            closed_after = time.monotonic() - left
    assert closed, "the upstream kept generating after the client left"
    assert upstream.started == 1 and upstream.finished_normally == 0
    assert closed_after < 3


def test_entry_point_loads_the_backend() -> None:
    assert load_plugin("backends", "upstream") is UpstreamBackend


def test_serve_options_from_the_command_line_build_the_backend() -> None:
    options = dict(
        parse_option(text)
        for text in (
            "base_url=http://vllm:8000/v1",
            "timeout=30",
            "max_connections=8",
            "check=false",
        )
    )
    config = ServeConfig(backend="upstream", model="llama-3", backend_options=options)
    backend = build_backend(config)
    assert isinstance(backend, UpstreamBackend)
    assert (str(backend.base_url), backend.model_id) == ("http://vllm:8000/", "llama-3")
    assert (backend.timeout, backend.max_connections, backend.check) == (30.0, 8, False)


async def test_proxy_is_transparent_for_the_openai_sdk_raw_events(front: str) -> None:
    # Every upstream token arrives as its own chunk: the proxy neither merges nor splits.
    async with httpx.AsyncClient(base_url=front) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={
                "model": "claude-echo",
                "stream": True,
                "messages": [{"role": "user", "content": "one two three"}],
            },
        )
    datas = [json.loads(line[6:]) for line in response.text.splitlines()
             if line.startswith("data: {")]  # fmt: skip
    contents = [d["choices"][0]["delta"].get("content") for d in datas if d["choices"]]
    assert [c for c in contents if c] == ["one", " two", " three"]
