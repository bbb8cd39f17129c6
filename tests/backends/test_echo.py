import anyio
import pytest

from tokenwire import ChatMessage, Finish, GenerationRequest, TokenDelta
from tokenwire.backends.echo import EchoBackend, split_words


async def run(backend: EchoBackend, request: GenerationRequest) -> tuple[list[str], Finish]:
    texts: list[str] = []
    async for event in backend.generate(request):
        if isinstance(event, TokenDelta):
            texts.append(event.text)
        else:
            return texts, event
    raise AssertionError("no Finish")


def chat(text: str, **fields: object) -> GenerationRequest:
    messages = (
        ChatMessage("system", "be brief"),
        ChatMessage("user", "first"),
        ChatMessage("user", text),
    )
    return GenerationRequest(model="echo", messages=messages, **fields)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_echoes_last_user_message_one_word_per_token() -> None:
    texts, finish = await run(EchoBackend(), chat("Hello  wide 世界 👋🏽 ok"))
    assert texts == ["Hello", "  wide", " 世界", " 👋🏽", " ok"]
    assert finish.reason == "stop"
    assert finish.usage.completion_tokens == 5
    assert finish.usage.prompt_tokens == 2 + 1 + 5


@pytest.mark.anyio
async def test_max_tokens_cuts_with_length() -> None:
    texts, finish = await run(
        EchoBackend(), GenerationRequest(model="echo", prompt="a b c d", max_tokens=2)
    )
    assert texts == ["a", " b"]
    assert finish.reason == "length"
    assert finish.usage.completion_tokens == 2


@pytest.mark.anyio
async def test_stop_string_ends_before_it_and_is_reported() -> None:
    request = GenerationRequest(model="echo", prompt="one two three four", stop=("ee f",))
    texts, finish = await run(EchoBackend(), request)
    assert "".join(texts) == "one two thr"
    assert (finish.reason, finish.stop_sequence) == ("stop", "ee f")


@pytest.mark.anyio
async def test_delay_paces_tokens() -> None:
    start = anyio.current_time()
    await run(EchoBackend(delay=0.02), GenerationRequest(model="echo", prompt="a b c"))
    assert anyio.current_time() - start >= 0.06


def test_words_join_back_to_the_text() -> None:
    text = "  lead\tand trail \n"
    assert "".join(split_words(text)) == text


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay must be >= 0"):
        EchoBackend(delay=-1)
