"""The prefill graphs on the real SmolLM2 int8: what they change in greedy output, and what not.

The int8 graph's per-row activations round more coarsely than the decode graph's
MatMulNBits; the bf16 graph (OpenVINO) rounds differently again, closer to fp32. Either way
greedy text may part from the decode graph's at near-ties (docs/benchmarks.md, "Prefill and
batch throughput"); clear answers stay the same.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tests.backends.onnx._helpers import collect, needs_bf16, running
from tokenwire.backends.onnx.manifest import DEFAULT_MODEL_NAME, ModelManifest
from tokenwire.prepare import PrepareOptions, prepare_model
from tokenwire.requests import ChatMessage, GenerationRequest

pytestmark = pytest.mark.anyio

# Prompts over the 16-token threshold once rendered (the chat template adds a system turn).
FACTS = {"Name the capital city of France.": "Paris", "What is the capital of Japan?": "Tokyo"}


@pytest.fixture(scope="module")
def smollm2_dir() -> Path:
    """The real SmolLM2 int8 prepared with `--prefill-graph` and `--bf16-prefill-graph`, once
    and cached between runs
    (`$TOKENWIRE_TEST_PREFILL_MODEL_DIR`, default `<repo>/.cache/models/...-prefill`)."""
    repo = Path(__file__).resolve().parents[3]
    directory = Path(
        os.environ.get("TOKENWIRE_TEST_PREFILL_MODEL_DIR")
        or repo / ".cache" / "models" / f"{DEFAULT_MODEL_NAME}-prefill"
    )
    options = PrepareOptions(output=directory, prefill_graph=True, bf16_prefill_graph=True)
    return prepare_model(options, stream=io.StringIO()).directory


def chat(text: str, tokens: int = 24) -> GenerationRequest:
    return GenerationRequest(
        model="m", messages=(ChatMessage("user", text),), max_tokens=tokens, temperature=0.0
    )


async def test_prepare_writes_a_prefill_graph_beside_the_decode_graph(smollm2_dir: Path) -> None:
    manifest = ModelManifest.read(smollm2_dir)
    assert manifest.prefill_model_file is not None
    assert (smollm2_dir / manifest.prefill_model_file).is_file()


async def test_clear_answers_are_the_same_with_and_without_the_prefill_graph(
    smollm2_dir: Path,
) -> None:
    answers: dict[bool, list[str]] = {}
    for enabled in (True, False):
        async with running(smollm2_dir, prefill_graph=enabled) as backend:
            answers[enabled] = [(await collect(backend, chat(q))).text for q in FACTS]
    assert answers[True] == answers[False]
    for answer, expected in zip(answers[True], FACTS.values(), strict=True):
        assert expected in answer


async def test_clear_answers_survive_batched_decode_steps_on_the_int8_graph(
    smollm2_dir: Path,
) -> None:
    """Both questions at once, so their decode steps run as a batch of two rows on the int8
    prefill graph (`prefill_graph_decode_rows=2`)."""
    import anyio

    async with running(smollm2_dir, prefill_graph=True, prefill_graph_decode_rows=2) as backend:
        answers: dict[str, str] = {}

        async def ask(question: str) -> None:
            answers[question] = (await collect(backend, chat(question))).text

        async with anyio.create_task_group() as tg:
            for question in FACTS:
                tg.start_soon(ask, question)
    for question, expected in FACTS.items():
        assert expected in answers[question]


async def test_drafts_verified_on_the_int8_graph_quote_a_notice(smollm2_dir: Path) -> None:
    """A quote, copy-heavy: drafts of up to 16 tokens verified on the int8 prefill graph are
    kept, and the notice comes back word for word, as the decode graph alone quotes it."""
    notice = "The library will be closed on Monday for maintenance."
    request = chat(f"Here is a notice: '{notice} Books may be returned to the drop box.' "
                   "Quote the notice word for word.", 40)  # fmt: skip
    options = {"speculation": True, "speculative_tokens": 16, "prefill_graph": True,
               "prefill_graph_decode_rows": 2}  # fmt: skip
    async with running(smollm2_dir, **options) as backend:
        text = (await collect(backend, request)).text
        assert backend._loop is not None and backend._loop.speculator is not None
        speculator = backend._loop.speculator
        # Every match is drafted at 16 there (its rejected tails are cheap), so a share of
        # each draft past the quote's end is dropped.
        assert speculator.accepted >= 8 and 3 * speculator.accepted > speculator.drafted
    assert notice in text


async def test_a_long_prompt_chunked_over_both_graphs_keeps_its_first_token(
    smollm2_dir: Path,
) -> None:
    """A 500-token prompt prefilled in chunks on the prefill graph, its first token read
    after the decode graph ran the last chunk: the same top token as the decode graph
    alone."""
    text = "Summarize this in one sentence.\n\n" + " ".join(
        f"Line {i}: the river rose to the second arch of the old stone bridge." for i in range(30)
    )
    first: dict[bool, int] = {}
    for enabled in (True, False):
        # Chunks of 64 tokens, the last one below the threshold so the decode graph runs it.
        async with running(
            smollm2_dir, prefill_graph=enabled, prefill_chunk=64, prefill_graph_min_tokens=64
        ) as backend:
            result = await collect(backend, chat(text, 8))
            usage = result.finish.usage
            assert usage is not None and usage.prompt_tokens > 400 and usage.prompt_tokens % 64
            first[enabled] = result.ids[0]
    assert first[True] == first[False]


async def test_prepare_writes_a_bf16_prefill_graph_beside_the_decode_graph(
    smollm2_dir: Path,
) -> None:
    manifest = ModelManifest.read(smollm2_dir)
    assert manifest.prefill_bf16_file is not None
    assert (smollm2_dir / manifest.prefill_bf16_file).is_file()


@needs_bf16
async def test_clear_answers_and_a_long_prompts_first_token_survive_the_bf16_graph(
    smollm2_dir: Path,
) -> None:
    # The chat prompts are 30-40 tokens: below the bf16 graph's default threshold of 64.
    async with running(smollm2_dir, prefill_graph="bf16", prefill_graph_min_tokens=16) as backend:
        for question, expected in FACTS.items():
            assert expected in (await collect(backend, chat(question))).text
    text = "Summarize this in one sentence.\n\n" + " ".join(
        f"Line {i}: the river rose to the second arch of the old stone bridge." for i in range(30)
    )
    first: dict[str, int] = {}
    for graph in ("bf16", "off"):
        # Chunks of 64: all but the last on OpenVINO, each reading the chunks before it.
        async with running(
            smollm2_dir, prefill_graph=graph, prefill_chunk=64, prefill_graph_min_tokens=64
        ) as backend:
            first[graph] = (await collect(backend, chat(text, 8))).ids[0]
    assert first["bf16"] == first["off"]
