"""The official openai, anthropic and google-genai SDKs read what the dialects render."""

from __future__ import annotations

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.dialects._sdk import BASE_URL, MODEL, ScriptedServer
from tokenwire.dialects import (
    AnthropicDialect,
    GeminiDialect,
    OpenAIChatDialect,
    OpenAICompletionsDialect,
)
from tokenwire.errors import GenerationError
from tokenwire.events import Event, Finish, TokenDelta, Usage

pytestmark = pytest.mark.anyio

USAGE = Usage(prompt_tokens=12, completion_tokens=3, cached_prompt_tokens=8)
EVENTS: list[Event] = [
    TokenDelta("Héllo", (1,)),
    TokenDelta(", wörld", (2,)),
    TokenDelta("!", (3,)),
    Finish("stop", USAGE),
]


def _failing_stream() -> list[Event]:
    class Exploding(list[Event]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield TokenDelta("partial")
            raise GenerationError("The model crashed.")

    return Exploding()


def openai_client(server: ScriptedServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{BASE_URL}/v1", api_key="k", http_client=server.client(), max_retries=0
    )


def anthropic_client(server: ScriptedServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=BASE_URL, api_key="k", http_client=server.client(httpx2), max_retries=0
    )


def genai_client(server: ScriptedServer, api_version: str | None = None) -> genai.Client:
    options = genai_types.HttpOptions(
        base_url=BASE_URL, api_version=api_version, httpx_async_client=server.client()
    )
    return genai.Client(api_key="k", http_options=options)


async def test_openai_chat_stream_accumulates_text_finish_reason_and_usage() -> None:
    server = ScriptedServer(OpenAIChatDialect(), EVENTS)
    client = openai_client(server)
    async with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        stream_options={"include_usage": True},
        max_completion_tokens=50,
        stop=["\n\n"],
    ) as stream:
        completion = await stream.get_final_completion()
    assert completion.choices[0].message.content == "Héllo, wörld!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 12
    assert completion.usage.total_tokens == 15
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 8
    request = server.requests[0]
    assert request.max_tokens == 50
    assert request.stop == ("\n\n",)
    assert [m.role for m in request.messages or ()] == ["system", "user"]
    assert server.raw_streams[0].endswith(b"data: [DONE]\n\n")


async def test_openai_chat_create_returns_a_whole_completion() -> None:
    server = ScriptedServer(OpenAIChatDialect(), [*EVENTS[:2], Finish("length", USAGE)])
    completion = await openai_client(server).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    )
    assert completion.object == "chat.completion"
    assert completion.id == "chatcmpl-0123abcd"
    assert completion.choices[0].message.content == "Héllo, wörld"
    assert completion.choices[0].finish_reason == "length"
    assert server.requests[0].messages is not None
    assert server.requests[0].messages[0].content == "hi"


async def test_openai_chat_unknown_model_raises_not_found_with_model_not_found_code() -> None:
    server = ScriptedServer(OpenAIChatDialect(), EVENTS)
    with pytest.raises(openai.NotFoundError) as caught:
        await openai_client(server).chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.code == "model_not_found"
    assert "gpt-9" in caught.value.message and MODEL in caught.value.message


async def test_openai_chat_error_mid_stream_raises_api_error() -> None:
    server = ScriptedServer(OpenAIChatDialect(), _failing_stream())
    stream = await openai_client(server).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    texts: list[str] = []
    with pytest.raises(openai.APIError, match="The model crashed"):
        async for chunk in stream:
            texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) == "partial"


async def test_openai_completions_stream_and_create() -> None:
    server = ScriptedServer(OpenAICompletionsDialect(), EVENTS)
    client = openai_client(server)
    stream = await client.completions.create(
        model=MODEL, prompt="Once", stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Héllo, wörld!"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    completion = await client.completions.create(model=MODEL, prompt=["Once"], max_tokens=5)
    assert completion.choices[0].text == "Héllo, wörld!"
    assert completion.usage is not None and completion.usage.prompt_tokens == 12
    assert server.requests[1].prompt == "Once" and server.requests[1].max_tokens == 5


async def test_anthropic_stream_accumulates_message_with_usage_from_message_delta() -> None:
    events: list[Event] = [*EVENTS[:2], Finish("stop", USAGE, stop_sequence="END")]
    server = ScriptedServer(AnthropicDialect(), events)
    async with anthropic_client(server).messages.stream(
        model=MODEL,
        max_tokens=64,
        system=[{"type": "text", "text": "be brief"}],
        messages=[{"role": "user", "content": "hi"}],
        stop_sequences=["END"],
        extra_body={"top_k": 5},
    ) as stream:
        texts = [text async for text in stream.text_stream]
        message = await stream.get_final_message()
    assert "".join(texts) == "Héllo, wörld"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Héllo, wörld"
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "END"
    assert message.id == "msg_0123abcd"
    assert message.usage.input_tokens == 4  # prompt 12 less 8 read from cache
    assert message.usage.cache_read_input_tokens == 8
    assert message.usage.output_tokens == 3
    request = server.requests[0]
    assert request.messages is not None
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.top_k == 5 and request.stop == ("END",)


async def test_anthropic_create_returns_a_whole_message() -> None:
    server = ScriptedServer(AnthropicDialect(), [*EVENTS[:1], Finish("length", USAGE)])
    message = await anthropic_client(server).messages.create(
        model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == "Héllo"
    assert message.stop_reason == "max_tokens"
    assert message.usage.input_tokens == 4


async def test_anthropic_errors_before_and_during_the_stream() -> None:
    server = ScriptedServer(AnthropicDialect(), EVENTS)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_client(server).messages.create(
            model=MODEL, max_tokens=0, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": caught.value.body["error"]["message"],
        },  # type: ignore[index]
    }
    failing = ScriptedServer(AnthropicDialect(), _failing_stream())
    with pytest.raises(anthropic.APIStatusError, match="The model crashed"):
        async with anthropic_client(failing).messages.stream(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            await stream.get_final_message()


@pytest.mark.parametrize("api_version", [None, "v1beta"])
async def test_gemini_stream_yields_text_and_usage(api_version: str | None) -> None:
    server = ScriptedServer(GeminiDialect(), EVENTS)
    client = genai_client(server, api_version)
    config = genai_types.GenerateContentConfig(
        system_instruction="be brief",
        max_output_tokens=20,
        top_k=40,
        temperature=0.5,
        stop_sequences=["x"],
    )
    chunks = [
        chunk
        async for chunk in await client.aio.models.generate_content_stream(
            model=MODEL, contents="hi", config=config
        )
    ]
    assert "".join(chunk.text or "" for chunk in chunks) == "Héllo, wörld!"
    assert all(chunk.text is not None for chunk in chunks)
    last = chunks[-1]
    assert last.candidates is not None
    assert last.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert last.usage_metadata is not None
    assert last.usage_metadata.prompt_token_count == 12
    assert last.usage_metadata.candidates_token_count == 3
    assert last.usage_metadata.cached_content_token_count == 8
    request = server.requests[0]
    assert request.top_k == 40 and request.max_tokens == 20 and request.temperature == 0.5
    assert request.messages is not None
    assert [m.role for m in request.messages] == ["system", "user"]
    assert b"event:" not in server.raw_streams[0] and b"id:" not in server.raw_streams[0]


async def test_gemini_generate_content_returns_a_whole_response() -> None:
    server = ScriptedServer(GeminiDialect(), [*EVENTS[:2], Finish("length", Usage(3, 2))])
    response = await genai_client(server).aio.models.generate_content(
        model=MODEL,
        contents=[
            genai_types.Content(role="user", parts=[genai_types.Part(text="a")]),
            genai_types.Content(role="model", parts=[genai_types.Part(text="b")]),
            genai_types.Content(role="user", parts=[genai_types.Part(text="c")]),
        ],
    )
    assert response.text == "Héllo, wörld"
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == genai_types.FinishReason.MAX_TOKENS
    assert response.usage_metadata is not None
    assert response.usage_metadata.total_token_count == 5
    assert response.usage_metadata.cached_content_token_count is None
    assert response.model_version == MODEL
    assert [m.role for m in server.requests[0].messages or ()] == ["user", "assistant", "user"]


async def test_gemini_errors_before_and_during_the_stream() -> None:
    server = ScriptedServer(GeminiDialect(), EVENTS)
    with pytest.raises(genai_errors.ClientError) as caught:
        await genai_client(server).aio.models.generate_content(model="other", contents="hi")
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"
    failing = ScriptedServer(GeminiDialect(), _failing_stream())
    with pytest.raises(genai_errors.APIError, match="The model crashed"):
        async for _ in await genai_client(failing).aio.models.generate_content_stream(
            model=MODEL, contents="hi"
        ):
            pass
