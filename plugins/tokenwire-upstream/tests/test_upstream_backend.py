"""UpstreamBackend against real upstreams on loopback: tokenwire servers and raw HTTP peers."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from starlette.types import Receive, Scope, Send
from tokenwire_upstream import UpstreamBackend
from upstream_support import ScriptedBackend, chat_chunk, raw_peer, running_server, sse_response

from tokenwire import (
    ChatMessage,
    Event,
    Finish,
    GenerationError,
    GenerationRequest,
    InvalidRequestError,
    NotFoundError,
    QueueFullError,
    ServiceUnavailableError,
    TokenDelta,
    Usage,
    create_app,
)
from tokenwire.backends.echo import EchoBackend

pytestmark = pytest.mark.anyio


def chat(text: str, **options: object) -> GenerationRequest:
    return GenerationRequest(model="echo", messages=(ChatMessage("user", text),), **options)  # type: ignore[arg-type]


async def collect(backend: UpstreamBackend, request: GenerationRequest) -> list[Event]:
    await backend.start()
    try:
        return [event async for event in backend.generate(request)]
    finally:
        await backend.close()


def split(events: Sequence[Event]) -> tuple[str, Finish]:
    *deltas, finish = events
    assert all(isinstance(d, TokenDelta) for d in deltas)
    assert isinstance(finish, Finish)
    return "".join(d.text for d in deltas if isinstance(d, TokenDelta)), finish


async def test_chat_text_and_usage_pass_through(echo_upstream: str) -> None:
    events = await collect(
        UpstreamBackend(base_url=echo_upstream, model="echo"), chat("the quick brown fox")
    )
    text, finish = split(events)
    assert text == "the quick brown fox"
    assert len(events) == 5  # one delta per upstream token, then the Finish
    assert finish == Finish("stop", Usage(prompt_tokens=4, completion_tokens=4))


async def test_prompt_requests_stream_from_completions(echo_upstream: str) -> None:
    request = GenerationRequest(model="echo", prompt="one two three")
    text, finish = split(
        await collect(UpstreamBackend(base_url=echo_upstream, model="echo"), request)
    )
    assert text == "one two three"
    assert finish.usage == Usage(3, 3)


async def test_max_tokens_finishes_with_length(echo_upstream: str) -> None:
    request = chat("a b c d e f", max_tokens=2)
    text, finish = split(
        await collect(UpstreamBackend(base_url=echo_upstream, model="echo"), request)
    )
    assert (text, finish.reason, finish.usage.completion_tokens) == ("a b", "length", 2)


async def test_stop_strings_are_sent_upstream(echo_upstream: str) -> None:
    request = chat("alpha beta END gamma", stop=("END",))
    text, finish = split(
        await collect(UpstreamBackend(base_url=echo_upstream, model="echo"), request)
    )
    assert (text, finish.reason) == ("alpha beta ", "stop")


async def test_sequential_requests_reuse_one_upstream_connection() -> None:
    ports: list[int] = []
    echo = create_app(EchoBackend(model="echo"))

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            ports.append(scope["client"][1])
        await echo(scope, receive, send)

    with running_server(recording) as url:
        backend = UpstreamBackend(base_url=url, model="echo", check=False)
        await backend.start()
        try:
            for text in ("first request", "second request", "third one"):
                assert split([e async for e in backend.generate(chat(text))])[0] == text
        finally:
            await backend.close()
    # One client port for all three: the stream was read to its end after [DONE].
    assert len(ports) == 3 and len(set(ports)) == 1


async def test_base_url_with_v1_suffix_works(echo_upstream: str) -> None:
    backend = UpstreamBackend(base_url=f"{echo_upstream}/v1/", model="echo")
    text, _ = split(await collect(backend, chat("hi there")))
    assert text == "hi there"


async def test_served_model_renames_the_model_for_clients(echo_upstream: str) -> None:
    backend = UpstreamBackend(base_url=echo_upstream, model="echo", served_model="front")
    assert backend.model_id == "front"
    text, _ = split(await collect(backend, chat("renamed")))
    assert text == "renamed"


async def test_unknown_upstream_model_raises_not_found(echo_upstream: str) -> None:
    backend = UpstreamBackend(base_url=echo_upstream, model="nope", check=False)
    with pytest.raises(NotFoundError) as caught:
        await collect(backend, chat("x"))
    # The client is told about the model it asked for, not the upstream's name for it.
    assert "'echo'" in caught.value.message and "nope" not in caught.value.message


async def test_upstream_400_keeps_its_message(echo_upstream: str) -> None:
    # Five stop strings: the OpenAI dialect upstream allows four.
    request = chat("x", stop=("a", "b", "c", "d", "e"))
    with pytest.raises(InvalidRequestError) as caught:
        await collect(UpstreamBackend(base_url=echo_upstream, model="echo"), request)
    assert caught.value.param == "stop"


async def test_upstream_500_raises_a_safe_generation_error() -> None:
    upstream = ScriptedBackend(["x"], fail_at=0, error=RuntimeError("secret internals"))
    with running_server(create_app(upstream)) as url, pytest.raises(GenerationError) as caught:
        await collect(UpstreamBackend(base_url=url, model="scripted"), chat("x"))
    assert "HTTP 500" in caught.value.message and "secret" not in caught.value.message


async def test_upstream_429_raises_queue_full_with_its_retry_after() -> None:
    upstream = ScriptedBackend(["x"], fail_at=0, error=QueueFullError("full", retry_after=3))
    with running_server(create_app(upstream)) as url, pytest.raises(QueueFullError) as caught:
        await collect(UpstreamBackend(base_url=url, model="scripted"), chat("x"))
    assert caught.value.retry_after == 3


async def test_in_band_error_mid_stream_raises_after_the_tokens_before_it() -> None:
    upstream = ScriptedBackend(["a", " b", " c"], fail_at=2)
    seen: list[str] = []
    with running_server(create_app(upstream)) as url, pytest.raises(GenerationError) as caught:
        backend = UpstreamBackend(base_url=url, model="scripted")
        await backend.start()
        try:
            async for event in backend.generate(chat("x")):
                assert isinstance(event, TokenDelta)
                seen.append(event.text)
        finally:
            await backend.close()
    assert seen == ["a", " b"]
    assert "secret" not in caught.value.message


async def test_connection_dropped_mid_body_raises_generation_error() -> None:
    response = sse_response([chat_chunk("par"), chat_chunk("tial")], chunked_and_cut=True)
    async with raw_peer(response) as peer:
        backend = UpstreamBackend(base_url=peer.url, model="m", check=False)
        seen: list[str] = []
        with pytest.raises(GenerationError) as caught:
            await backend.start()
            try:
                async for event in backend.generate(chat("x")):
                    assert isinstance(event, TokenDelta)
                    seen.append(event.text)
            finally:
                await backend.close()
    assert seen == ["par", "tial"]
    assert "lost mid-stream" in caught.value.message


async def test_clean_end_without_finish_or_done_is_an_error() -> None:
    async with raw_peer(sse_response([chat_chunk("cut")])) as peer:
        with pytest.raises(GenerationError) as caught:
            await collect(UpstreamBackend(base_url=peer.url, model="m", check=False), chat("x"))
    assert "before it finished" in caught.value.message


async def test_missing_usage_is_counted_from_the_deltas() -> None:
    # llama-cpp-python's server: a finish reason and [DONE], but never a usage chunk.
    payloads = [
        chat_chunk("a"),
        chat_chunk(" b"),
        chat_chunk(" c"),
        chat_chunk(None, "length"),
        "[DONE]",
    ]
    async with raw_peer(sse_response(payloads)) as peer:
        events = await collect(
            UpstreamBackend(base_url=peer.url, model="m", check=False), chat("x")
        )
    assert split(events) == ("a b c", Finish("length", Usage(completion_tokens=3)))


async def test_cached_tokens_and_vllm_stop_reason_reach_the_finish() -> None:
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 6},
    }
    finish_chunk = chat_chunk(None, "stop")
    finish_chunk["choices"][0]["stop_reason"] = "END"  # type: ignore[index]
    payloads = [chat_chunk("ok"), finish_chunk, {"choices": [], "usage": usage}, "[DONE]"]
    async with raw_peer(sse_response(payloads)) as peer:
        events = await collect(
            UpstreamBackend(base_url=peer.url, model="m", check=False), chat("x", stop=("END",))
        )
    assert split(events) == ("ok", Finish("stop", Usage(9, 1, 6), stop_sequence="END"))


async def test_request_body_and_key_reach_the_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWIRE_UPSTREAM_API_KEY", "sk-from-env")
    async with raw_peer(sse_response([chat_chunk(None, "stop"), "[DONE]"])) as peer:
        backend = UpstreamBackend(base_url=peer.url, model="up", check=False)
        assert "sk-from-env" not in repr(backend)
        await collect(backend, chat("x", top_k=5, seed=3))
    (body,) = peer.bodies
    assert body["model"] == "up" and body["top_k"] == 5 and body["seed"] == 3
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_unreachable_upstream_raises_service_unavailable() -> None:
    async with raw_peer(b"") as peer:
        url = peer.url  # a port that was just closed: nothing listens there now
    with pytest.raises(ServiceUnavailableError):
        await collect(UpstreamBackend(base_url=url, model="m", check=False), chat("x"))


async def test_start_fails_when_the_upstream_is_unreachable() -> None:
    async with raw_peer(b"") as peer:
        url = peer.url
    backend = UpstreamBackend(base_url=url, model="m")
    with pytest.raises(RuntimeError, match="unreachable"):
        await backend.start()
    await backend.close()


@pytest.mark.parametrize(
    "options",
    [
        {"base_url": "ftp://host", "model": "m"},
        {"base_url": "http://host", "model": "m", "timeout": 0},
        {"base_url": "http://host", "model": "m", "max_connections": 0},
    ],
)
def test_bad_options_are_rejected_with_their_value(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        UpstreamBackend(**options)  # type: ignore[arg-type]
