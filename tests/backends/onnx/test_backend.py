"""OnnxBackend end to end on tiny models: batching, chunking, limits, cancellation."""

from __future__ import annotations

import logging
import warnings
from contextlib import aclosing
from pathlib import Path

import anyio
import onnxruntime as ort
import pytest

from tests.backends.onnx._helpers import Result, all_slots_free, collect, request, running
from tests.backends.onnx.tiny_models import EOS_ID, ReferenceModel
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.errors import (
    ContextLengthExceededError,
    GenerationError,
    InvalidRequestError,
    QueueFullError,
    ServiceUnavailableError,
)
from tokenwire.events import Finish, Progress, TokenDelta
from tokenwire.requests import ChatMessage, GenerationRequest

pytestmark = pytest.mark.anyio

PROMPT = "Once upon a time there was a tiny robot"
OTHERS = ("The capital city of France is", "def main():", "Numbers: 1 2 3")
LENGTHS = (20, 8, 14)  # the others leave at different steps


async def test_greedy_stream_matches_the_reference_model(model_dir: Path) -> None:
    async with running(model_dir) as backend:
        result = await collect(backend, request(PROMPT, 20))
        assert backend.tokenizer is not None
        prompt_ids = backend.tokenizer.encode(PROMPT).ids
    expected = ReferenceModel(model_dir).greedy(prompt_ids, 20)
    cut = expected.index(EOS_ID) + 1 if EOS_ID in expected else 20
    assert result.ids == expected[:cut]
    assert result.finish.usage.prompt_tokens == len(prompt_ids)
    assert result.finish.usage.completion_tokens == cut
    assert result.finish.reason == ("stop" if EOS_ID in expected else "length")
    phases = [e.phase for e in result.events if isinstance(e, Progress)]
    assert phases == ["queued", "prefill", "decode"]


async def test_output_alone_equals_output_while_three_others_join_and_leave(
    model_dir: Path,
) -> None:
    async with running(model_dir, max_batch=4) as backend:
        alone = await collect(backend, request(PROMPT, 60))
        others_alone = [
            await collect(backend, request(p, n)) for p, n in zip(OTHERS, LENGTHS, strict=True)
        ]
        joins = [anyio.Event() for _ in OTHERS]
        results: dict[int, Result] = {}
        batches: list[int] = []

        async def main() -> None:
            events = []
            async with aclosing(backend.generate(request(PROMPT, 60))) as stream:
                async for event in stream:
                    events.append(event)
                    count = sum(isinstance(e, TokenDelta) for e in events)
                    for at, join in zip((2, 4, 6), joins, strict=True):
                        if count >= at:
                            join.set()
                    batches.append(backend.stats.last_batch)
            finish = events[-1]
            assert isinstance(finish, Finish)
            deltas = tuple(e for e in events if isinstance(e, TokenDelta))
            results[-1] = Result(deltas, finish, tuple(events))

        async def other(index: int, prompt: str, max_tokens: int) -> None:
            await joins[index].wait()
            results[index] = await collect(backend, request(prompt, max_tokens))

        async with anyio.create_task_group() as tg:
            tg.start_soon(main)
            for index, (prompt, max_tokens) in enumerate(zip(OTHERS, LENGTHS, strict=True)):
                tg.start_soon(other, index, prompt, max_tokens)
    assert results[-1].ids == alone.ids
    assert results[-1].text == alone.text
    assert [results[i].ids for i in range(3)] == [r.ids for r in others_alone]
    assert max(batches) >= 3  # they really ran in one batch
    assert batches[-1] == 1  # ... and left it again


async def test_chunked_prefill_equals_one_shot_prefill(model_dir: Path) -> None:
    long_prompt = " ".join([PROMPT] * 6)
    async with running(model_dir, prefill_chunk=256) as backend:
        one_shot = await collect(backend, request(long_prompt, 16))
        shots = backend.stats.prefill_chunks
    async with running(model_dir, prefill_chunk=7) as backend:
        chunked = await collect(backend, request(long_prompt, 16))
        assert backend.stats.prefill_chunks > shots == 1
    assert chunked.ids == one_shot.ids


async def test_running_streams_keep_decoding_while_a_long_prompt_prefills(model_dir: Path) -> None:
    long_prompt = " ".join([PROMPT] * 8)
    async with (
        running(model_dir, prefill_chunk=4) as backend,
        aclosing(backend.generate(request(PROMPT, 200))) as first,
    ):
        async for event in first:
            if isinstance(event, TokenDelta):
                break
        steps = backend.stats.steps
        late = await collect(backend, request(long_prompt, 2))
        # Every 4-token chunk of the late prompt was followed by a decode step.
        assert backend.stats.steps - steps >= late.finish.usage.prompt_tokens // 4


async def test_same_seed_gives_the_same_text_and_other_seeds_differ(model_dir: Path) -> None:
    async with running(model_dir) as backend:
        sample = dict(temperature=1.0, top_p=0.95, top_k=50)
        first = await collect(backend, request(PROMPT, 30, seed=7, **sample))
        again = await collect(backend, request(PROMPT, 30, seed=7, **sample))
        other = await collect(backend, request(PROMPT, 30, seed=8, **sample))
        greedy = await collect(backend, request(PROMPT, 30))
    assert first.ids == again.ids and first.text == again.text
    assert other.ids != first.ids
    assert first.ids != greedy.ids


async def test_stop_string_ends_the_stream_and_is_never_emitted(model_dir: Path) -> None:
    async with running(model_dir) as backend:
        full = await collect(backend, request(PROMPT, 40))
        text = full.text
        stop = next(text[i : i + 3] for i in range(8, len(text) - 3) if text[i : i + 3].strip())
        cut = await collect(backend, request(PROMPT, 40, stop=(stop, "never-there")))
    assert cut.text == text[: text.index(stop)]
    assert stop not in cut.text
    assert cut.finish.reason == "stop" and cut.finish.stop_sequence == stop


async def test_without_max_tokens_generation_runs_until_the_context_is_full(
    model_dir: Path,
) -> None:
    async with running(model_dir, max_context=40) as backend:
        result = await collect(backend, request(PROMPT, None))
    usage = result.finish.usage
    if EOS_ID in result.ids:
        assert result.finish.reason == "stop"
    else:
        assert result.finish.reason == "length"
        assert usage.prompt_tokens + usage.completion_tokens == 40


async def test_chat_messages_render_through_the_models_template(model_dir: Path) -> None:
    messages = (ChatMessage("system", "Be brief."), ChatMessage("user", "Hello there"))
    async with running(model_dir) as backend:
        chat = await collect(
            backend,
            GenerationRequest(model="tiny", messages=messages, max_tokens=12, temperature=0.0),
        )
        assert backend.chat_template is not None
        rendered = backend.chat_template.render(messages)
        raw = await collect(backend, request(rendered, 12))
    assert rendered.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert rendered.endswith("<|im_start|>assistant\n")
    assert chat.ids == raw.ids
    assert chat.finish.usage.prompt_tokens == raw.finish.usage.prompt_tokens


async def test_full_queue_raises_queue_full_before_the_first_event(model_dir: Path) -> None:
    async with running(model_dir, max_batch=1, max_queue=1) as backend:
        async with aclosing(backend.generate(request(PROMPT, None))) as busy:
            async for event in busy:
                if isinstance(event, TokenDelta):
                    break
            async with aclosing(backend.generate(request(PROMPT, 4))) as queued:
                assert await queued.__anext__() == Progress("queued")
                assert backend.stats.waiting == 1
                refused = backend.generate(request(PROMPT, 4))
                with pytest.raises(QueueFullError, match="limit is 1"):
                    await refused.__anext__()
        assert backend.stats.waiting == 0  # the queued one left when its client did


async def test_prompt_longer_than_the_context_raises_with_the_token_counts(
    model_dir: Path,
) -> None:
    long_prompt = " ".join([PROMPT] * 10)
    async with running(model_dir, max_context=32) as backend:
        assert backend.tokenizer is not None
        count = len(backend.tokenizer.encode(long_prompt).ids)
        with pytest.raises(ContextLengthExceededError) as info:
            await backend.generate(request(long_prompt, 4)).__anext__()
    assert f"{count} tokens" in info.value.message and "32 tokens" in info.value.message
    assert info.value.status_code == 400


async def test_closing_the_stream_frees_the_slot_at_the_next_step(model_dir: Path) -> None:
    async with (
        running(model_dir, max_batch=4) as backend,
        aclosing(backend.generate(request(PROMPT, None))) as kept,
    ):
        async for event in kept:
            if isinstance(event, TokenDelta):
                break
        async with aclosing(backend.generate(request(OTHERS[0], None))) as dropped:
            tokens = 0
            async for event in dropped:
                tokens += isinstance(event, TokenDelta)
                if tokens == 3:
                    break
            assert backend.stats.running == 2
            assert backend.stats.free_slots == 2
        steps = backend.stats.steps
        async for event in kept:
            last = event
            if backend.stats.steps >= steps + 2:
                break
        assert isinstance(last, TokenDelta)
        # The step in flight at the close may still carry it; the one after may not.
        assert backend.stats.last_batch == 1
        assert backend.stats.running == 1
        assert backend.stats.free_slots == 3


async def test_closing_a_stream_mid_prefill_frees_its_slot(model_dir: Path) -> None:
    long_prompt = " ".join([PROMPT] * 6)
    async with running(model_dir, max_batch=2, prefill_chunk=2) as backend:
        async with aclosing(backend.generate(request(long_prompt, 4))) as stream:
            async for event in stream:
                if event == Progress("prefill"):
                    break
            await anyio.sleep(0.01)
            assert backend.stats.prefilling == 1
        for _ in range(100):
            await anyio.sleep(0.005)
            if backend.stats.free_slots == 2:
                break
        assert backend.stats.free_slots == 2 and backend.stats.prefilling == 0
        # The slot is reusable.
        assert (await collect(backend, request(PROMPT, 3))).finish.usage.completion_tokens == 3


async def test_a_failing_decode_step_fails_its_requests_and_the_loop_goes_on(
    model_dir: Path,
) -> None:
    async with running(model_dir) as backend:
        loop = backend._loop
        assert loop is not None
        real = loop.runner.decode
        calls = 0

        def flaky(slots: list[int], tokens: list[int], *rest):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 3:
                raise RuntimeError("simulated ORT failure")
            return real(slots, tokens, *rest)

        loop.runner.decode = flaky  # type: ignore[method-assign]
        with pytest.raises(GenerationError):
            await collect(backend, request(PROMPT, 10))
        loop.runner.decode = real  # type: ignore[method-assign]
        fine = await collect(backend, request(PROMPT, 10))
        assert fine.finish.usage.completion_tokens == 10
        assert await all_slots_free(backend)


async def test_one_requests_detokenizer_failure_spares_the_others(model_dir: Path) -> None:
    async with running(model_dir) as backend:
        alone = await collect(backend, request(PROMPT, 30))
        loop = backend._loop
        assert loop is not None
        results: dict[str, object] = {}

        async def healthy() -> None:
            results["healthy"] = await collect(backend, request(PROMPT, 30))

        async def doomed() -> None:
            try:
                doomed = request(OTHERS[1], 30, request_id="doomed")
                async with aclosing(backend.generate(doomed)) as stream:
                    async for event in stream:
                        if event == Progress("decode"):
                            # Now running beside the healthy one: break its detokenizer.
                            victim = next(
                                g for g in loop.scheduler.running if g.request_id == "doomed"
                            )
                            victim.detokenizer.step = broken  # type: ignore[method-assign]
            except GenerationError as exc:
                results["doomed"] = exc

        def broken(token_id: int) -> str:
            raise ValueError("bad token")

        async with anyio.create_task_group() as tg:
            tg.start_soon(healthy)
            tg.start_soon(doomed)
    assert isinstance(results["doomed"], GenerationError)
    healthy_result = results["healthy"]
    assert isinstance(healthy_result, Result) and healthy_result.ids == alone.ids


async def test_invalid_sampling_parameters_are_refused_before_the_first_event(
    model_dir: Path,
) -> None:
    async with running(model_dir) as backend:
        with pytest.raises(InvalidRequestError, match="top_p"):
            await backend.generate(request(PROMPT, 4, temperature=1.0, top_p=0.0)).__anext__()
        with pytest.raises(InvalidRequestError, match="max_tokens"):
            await backend.generate(request(PROMPT, 0)).__anext__()


async def test_close_ends_streams_still_open(model_dir: Path) -> None:
    backend = OnnxBackend(model_dir)
    await backend.start()
    stream = backend.generate(request(PROMPT, None))
    await stream.__anext__()
    await backend.close()
    with pytest.raises(ServiceUnavailableError, match="shutting down"):
        while True:
            await stream.__anext__()
    await stream.aclose()


def test_missing_default_model_tells_the_user_to_run_prepare(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKENWIRE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="tokenwire prepare"):
        OnnxBackend()


def test_model_id_comes_from_the_manifest(model_dir: Path) -> None:
    backend = OnnxBackend(str(model_dir), max_batch=2)
    assert backend.model_id == f"tiny-llama-{model_dir.name}"
    with pytest.raises(ValueError, match="max_context"):
        OnnxBackend(model_dir, max_context=10_000)


@pytest.mark.parametrize(("option", "value"), [("prefill_budget_ms", -1), ("allow_spinning", "no")])
def test_bad_scheduling_options_are_refused_by_name(
    model_dir: Path, option: str, value: object
) -> None:
    with pytest.raises(ValueError, match=option):
        OnnxBackend(model_dir, **{option: value})  # type: ignore[arg-type]


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="a CUDA build is installed"
)
async def test_cuda_device_falls_back_to_cpu_with_a_warning(
    model_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tokenwire.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ORT's own "not in available providers"
        async with running(model_dir, device="cuda") as backend:
            result = await collect(backend, request(PROMPT, 5))
    assert backend.placement.device == "cpu"
    assert "fell back" in caplog.text
    assert result.finish.usage.completion_tokens == 5


async def test_requests_that_arrive_together_decode_as_one_batch(model_dir: Path) -> None:
    # Small chunks: the prompts take several boundaries to prefill, and the first one to
    # finish must not run on alone while the others wait for the loop.
    async with running(model_dir, max_batch=4, prefill_chunk=4) as backend:
        batches: list[int] = []

        async def stream(prompt: str) -> None:
            async for _ in backend.generate(request(prompt, 40)):
                batches.append(backend.stats.last_batch)

        async with anyio.create_task_group() as tg:
            for prompt in (PROMPT, *OTHERS):
                tg.start_soon(stream, prompt)
        assert max(batches) == 4


@pytest.mark.parametrize(("budget_ms", "cut"), [(1e-6, True), (0, False)])
async def test_prompt_chunks_beside_running_streams_fit_the_prefill_budget(
    model_dir: Path, budget_ms: float, cut: bool
) -> None:
    long_prompt = " ".join([PROMPT] * 4)
    options = {"max_batch": 2, "prefill_chunk": 128, "prefill_budget_ms": budget_ms}
    async with (
        running(model_dir, **options) as backend,
        aclosing(backend.generate(request(PROMPT, None))) as running_stream,
    ):
        async for event in running_stream:
            if isinstance(event, TokenDelta):
                break
        chunks = backend.stats.prefill_chunks
        result = await collect(backend, request(long_prompt, 2))
        prompt_tokens = result.finish.usage.prompt_tokens
        assert 16 < prompt_tokens <= 128
        used = backend.stats.prefill_chunks - chunks
        # A budget far below one token's time runs a token per boundary (the first prompt
        # was timed already); no budget runs the whole prompt in one chunk.
        assert used == (prompt_tokens if cut else 1)


async def test_max_tokens_beyond_the_room_left_is_refused_with_the_counts(model_dir: Path) -> None:
    async with running(model_dir, max_context=40) as backend:
        assert backend.tokenizer is not None
        count = len(backend.tokenizer.encode(PROMPT).ids)
        room = 40 - count
        with pytest.raises(ContextLengthExceededError) as info:
            await backend.generate(request(PROMPT, room + 1)).__anext__()
        exactly = await collect(backend, request(PROMPT, room, temperature=1.0, seed=1))
    message = info.value.message
    assert "40 tokens" in message and f"takes {count}" in message
    assert f"leaves {room}" in message and f"asks for {room + 1}" in message
    assert info.value.param == "max_tokens" and info.value.status_code == 400
    assert exactly.finish.usage.completion_tokens <= room


async def test_the_servers_budget_is_cut_to_the_room_left_not_refused(model_dir: Path) -> None:
    async with running(model_dir, max_context=40) as backend:
        unnamed = await collect(backend, request(PROMPT, None, default_max_tokens=10_000))
        budgeted = await collect(backend, request(PROMPT, None, default_max_tokens=3))
        named = await collect(backend, request(PROMPT, 5, default_max_tokens=3))
    usage = unnamed.finish.usage
    if EOS_ID not in unnamed.ids:
        assert usage.prompt_tokens + usage.completion_tokens == 40
    assert budgeted.ids == unnamed.ids[:3]
    assert named.ids == unnamed.ids[:5]  # the client's own max_tokens wins over the budget
