"""The official client SDKs stream from a real server, through every dialect."""

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

TEXT = "Streaming works: héllo 世界 👋🏽 end"


def openai_client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_openai_chat_stream_reassembles_the_text(echo_url: str) -> None:
    stream = openai_client(echo_url).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": TEXT}], stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_openai_chat_usage_only_when_asked(echo_url: str) -> None:
    stream = openai_client(echo_url).chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": TEXT}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=3,
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_openai_chat_non_streamed(echo_url: str) -> None:
    completion = openai_client(echo_url).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": TEXT}]
    )
    assert completion.choices[0].message.content == TEXT
    assert completion.usage is not None and completion.usage.completion_tokens == len(TEXT.split())


def test_openai_completions_stream(echo_url: str) -> None:
    stream = openai_client(echo_url).completions.create(model="echo", prompt=TEXT, stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == TEXT


def test_openai_models_lists_the_backend_model(echo_url: str) -> None:
    assert [m.id for m in openai_client(echo_url).models.list()] == ["echo"]


def test_openai_unknown_model_is_a_404_the_sdk_understands(echo_url: str) -> None:
    with pytest.raises(openai.NotFoundError):
        openai_client(echo_url).chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "x"}], stream=True
        )


def test_openai_n_above_one_is_a_clear_400(echo_url: str) -> None:
    with pytest.raises(openai.BadRequestError, match="n"):
        openai_client(echo_url).chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "x"}], n=2
        )


def test_anthropic_messages_stream(echo_url: str) -> None:
    client = anthropic.Anthropic(base_url=echo_url, api_key="unused", max_retries=0)
    with client.messages.stream(
        model="echo",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": TEXT}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(TEXT.split())
    assert final.content[0].type == "text" and final.content[0].text == TEXT


def test_anthropic_stop_sequence_and_max_tokens(echo_url: str) -> None:
    client = anthropic.Anthropic(base_url=echo_url, api_key="unused", max_retries=0)
    message = client.messages.create(
        model="echo",
        max_tokens=100,
        stop_sequences=["世界"],
        messages=[{"role": "user", "content": TEXT}],
    )
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "世界")
    assert message.content[0].text == TEXT[: TEXT.index("世界")]  # type: ignore[union-attr]
    with client.messages.stream(
        model="echo", max_tokens=2, messages=[{"role": "user", "content": TEXT}]
    ) as stream:
        assert stream.get_final_message().stop_reason == "max_tokens"


def test_anthropic_bad_request_is_an_sdk_error(echo_url: str) -> None:
    client = anthropic.Anthropic(base_url=echo_url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="echo", max_tokens=-1, messages=[{"role": "user", "content": "x"}]
        )


@pytest.mark.parametrize("api_version", ["v1", "v1beta"])
def test_gemini_stream_and_whole_response(echo_url: str, api_version: str) -> None:
    client = genai.Client(
        api_key="unused",
        http_options=types.HttpOptions(base_url=echo_url, api_version=api_version),
    )
    chunks = list(client.models.generate_content_stream(model="echo", contents=TEXT))
    assert "".join(c.text or "" for c in chunks) == TEXT
    assert chunks[-1].candidates is not None
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    whole = client.models.generate_content(
        model="echo", contents=TEXT, config=types.GenerateContentConfig(max_output_tokens=2)
    )
    assert whole.text == "Streaming works:"
    assert whole.candidates is not None
    assert whole.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
