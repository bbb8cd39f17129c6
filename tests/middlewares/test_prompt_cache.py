"""The prompt_cache middleware: offers its cache to the backend, counts hits, reaches the APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import anthropic
import openai
import pytest

from tests._support.backends import ScriptedBackend
from tests._support.server import running_server
from tests.backends.onnx.tiny_models import write_model_dir
from tokenwire import (
    Event,
    Finish,
    GenerationRequest,
    TokenDelta,
    Usage,
    build_pipeline,
    create_app,
)
from tokenwire.backends.echo import EchoBackend
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.middlewares import CancellationMiddleware, MetricsMiddleware, PromptCacheMiddleware
from tokenwire.prompt_cache import PromptCache

SYSTEM = (
    "You are a tiny robot. The capital city of France is Paris. The capital of Japan is "
    "Tokyo. Once upon a time there was a tiny language model that liked to count sheep."
)
MODEL = "tiny-llama-shared"
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Count the sheep."}]


def request(prompt: str = "hello") -> GenerationRequest:
    return GenerationRequest(model="m", prompt=prompt)


class ProbeBackend:
    """Records which prompt cache each request it gets carries."""

    model_id = "probe"

    def __init__(self) -> None:
        self.seen: list[PromptCache | None] = []
        self.closed = False

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        try:
            self.seen.append(request.prompt_cache)
            yield TokenDelta("a", (1,))
            yield TokenDelta("b", (2,))
            yield Finish("stop", Usage(10, 2, 8))
        finally:
            self.closed = True


@pytest.mark.anyio
async def test_the_backend_gets_the_cache_on_the_request() -> None:
    backend = ProbeBackend()
    middleware = PromptCacheMiddleware(backend.generate, max_bytes=1000, block_tokens=4)
    sent = request()
    events = [event async for event in middleware(sent)]
    assert backend.seen == [middleware.cache]
    assert sent.prompt_cache is None  # the caller's request is left as it was
    assert [type(e) for e in events] == [TokenDelta, TokenDelta, Finish]
    assert middleware.cache.max_bytes == 1000 and middleware.cache.block_tokens == 4


@pytest.mark.anyio
async def test_the_offer_passes_through_the_built_in_middlewares_below_it() -> None:
    backend = ProbeBackend()
    cache = PromptCache(1000, 4)
    pipeline = build_pipeline(
        backend.generate,
        [partial(PromptCacheMiddleware, cache=cache), CancellationMiddleware, MetricsMiddleware],
    )
    events = [event async for event in pipeline(request())]
    assert backend.seen == [cache]
    assert isinstance(events[-1], Finish) and events[-1].usage.cached_prompt_tokens == 8


@pytest.mark.anyio
async def test_hits_reported_by_the_backend_are_counted() -> None:
    middleware = PromptCacheMiddleware(ProbeBackend().generate)
    for _ in range(3):
        [event async for event in middleware(request())]
    stats = middleware.stats
    assert (stats.requests, stats.hits, stats.cached_tokens) == (3, 3, 24)


@pytest.mark.anyio
async def test_a_backend_that_cannot_reuse_kv_streams_unchanged_with_no_hits() -> None:
    backend = ScriptedBackend(["one", " two", " three"])
    middleware = PromptCacheMiddleware(backend.generate)
    direct = [event async for event in backend.generate(request())]
    through = [event async for event in middleware(request())]
    assert through == direct
    stats = middleware.stats
    assert (stats.requests, stats.hits, stats.cache.queries, stats.cache.blocks) == (1, 0, 0, 0)


@pytest.mark.anyio
async def test_closing_the_stream_early_closes_the_backend_stream() -> None:
    backend = ProbeBackend()
    stream = PromptCacheMiddleware(backend.generate)(request())
    assert isinstance(await stream.__anext__(), TokenDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    assert backend.closed


def test_echo_through_the_app_reports_zero_cached_tokens_and_no_errors() -> None:
    app = create_app(EchoBackend(), middlewares=["prompt_cache"])
    with (
        running_server(app) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as chat,
        anthropic.Anthropic(base_url=url, api_key="x", max_retries=0) as claude,
    ):
        for _ in range(2):
            reply = chat.chat.completions.create(model="echo", messages=MESSAGES)  # type: ignore[arg-type]
            assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
            assert reply.usage.prompt_tokens_details.cached_tokens == 0
            message = claude.messages.create(model="echo", max_tokens=50, messages=MESSAGES[1:])  # type: ignore[arg-type]
            assert message.usage.cache_read_input_tokens == 0
            assert message.content[0].text == "Count the sheep."  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("tiny") / "shared", "shared")


@pytest.fixture
def tiny_url(tiny_model: Path) -> Iterator[str]:
    """A server on the tiny model with an empty prompt cache."""
    middleware = partial(PromptCacheMiddleware, block_tokens=8)
    with running_server(create_app(OnnxBackend(tiny_model), middlewares=[middleware])) as url:
        yield url


def test_openai_usage_reports_the_reused_prefix_of_a_repeated_chat(tiny_url: str) -> None:
    messages = [*MESSAGES[:1], {"role": "user", "content": "Name the capital city of France."}]
    with openai.OpenAI(base_url=f"{tiny_url}/v1", api_key="x", max_retries=0) as chat:
        ask = partial(
            chat.chat.completions.create,
            model=MODEL,
            messages=messages,
            max_tokens=12,
            temperature=0,
        )
        first, second = ask(), ask()
        chunks = list(ask(stream=True, stream_options={"include_usage": True}))
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None and 0 < cached < second.usage.prompt_tokens
    assert second.usage.prompt_tokens == first.usage.prompt_tokens
    assert first.choices[0].message.content == second.choices[0].message.content
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == cached
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == first.choices[0].message.content


def test_anthropic_usage_reports_cache_reads_apart_from_input_tokens(tiny_url: str) -> None:
    with anthropic.Anthropic(base_url=tiny_url, api_key="x", max_retries=0) as claude:
        options = {
            "model": MODEL,
            "max_tokens": 12,
            "system": SYSTEM,
            "messages": [{"role": "user", "content": "Tell me about Tokyo."}],
            "extra_body": {"temperature": 0.0},
        }
        first, second = claude.messages.create(**options), claude.messages.create(**options)  # type: ignore[call-overload]
        with claude.messages.stream(**options) as stream:  # type: ignore[arg-type]
            final = stream.get_final_message()
    assert first.usage.cache_read_input_tokens == 0
    reused = second.usage.cache_read_input_tokens
    assert reused is not None and reused > 0
    # Anthropic counts cache reads apart: input + cache reads is the whole prompt.
    assert second.usage.input_tokens + reused == first.usage.input_tokens
    assert first.content == second.content
    assert final.usage.cache_read_input_tokens == reused
    assert [block.text for block in final.content] == [block.text for block in first.content]  # type: ignore[union-attr]
