"""The reasoning parser middleware: `<think>` text moves to the reasoning channel."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenwire.events import Event, Finish, TokenDelta, TokenLogprob
from tokenwire.middlewares.reasoning import ReasoningParserMiddleware
from tokenwire.requests import GenerationRequest

REQUEST = GenerationRequest(model="m", prompt="p")
# (output, starts_in_reasoning, reasoning, answer)
CASES = [
    ("<think>\nLet me see.\n</think>\n\nParis.", False, "\nLet me see.\n", "\n\nParis."),
    ("  <think>a < b </thin</think>ok", False, "a < b </thin", "ok"),
    ("Paris. <think>not here</think>", False, "", "Paris. <think>not here</think>"),
    ("<thinking>", False, "", "<thinking>"),
    ("<thi", False, "", "<thi"),
    ("<think>cut short </th", False, "cut short </th", ""),
    ("still thinking</think>done", True, "still thinking", "done"),
    ("", False, "", ""),
]


def script(pieces: Sequence[str], logprobs: bool = False):  # type: ignore[no-untyped-def]
    async def generate(request: GenerationRequest) -> AsyncIterator[Event]:
        for index, piece in enumerate(pieces):
            lp = (TokenLogprob(piece, -1.0),) if logprobs else None
            yield TokenDelta(piece, (index,), lp)
        yield Finish("stop")

    return generate


async def parse(pieces: Sequence[str], starts: bool = False, **options: str) -> list[Event]:
    middleware = ReasoningParserMiddleware(script(pieces), starts_in_reasoning=starts, **options)
    return [event async for event in middleware(REQUEST)]


def channels(events: list[Event]) -> tuple[str, str]:
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    assert events[-1] == Finish("stop")
    # Reasoning comes first, then the answer: never interleaved.
    order = [d.channel for d in deltas if d.text]
    assert order == sorted(order, key=lambda c: c == "answer")
    reasoning = "".join(d.text for d in deltas if d.channel == "reasoning")
    return reasoning, "".join(d.text for d in deltas if d.channel == "answer")


@pytest.mark.anyio
@pytest.mark.parametrize(("text", "starts", "reasoning", "answer"), CASES)
async def test_think_tags_split_reasoning_from_the_answer_at_any_split(
    text: str, starts: bool, reasoning: str, answer: str
) -> None:
    assert channels(await parse([text], starts)) == (reasoning, answer)
    assert channels(await parse(list(text), starts)) == (reasoning, answer)


@settings(max_examples=60, deadline=None, database=None)
@given(case=st.sampled_from(CASES), cuts=st.sets(st.integers(min_value=1, max_value=60)))
def test_any_split_into_deltas_gives_the_same_channels(
    case: tuple[str, bool, str, str], cuts: set[int]
) -> None:
    text, starts, reasoning, answer = case
    bounds = [0, *sorted(c for c in cuts if c < len(text)), len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert channels(anyio.run(lambda: parse(pieces, starts))) == (reasoning, answer)


@pytest.mark.anyio
async def test_token_ids_and_logprobs_of_tags_go_with_the_next_text() -> None:
    pieces = ["<think>", "hm", "</think>", "\n\n", "Hi"]
    middleware = ReasoningParserMiddleware(script(pieces, logprobs=True))
    events = [event async for event in middleware(REQUEST)]
    assert [(e.text, e.channel, e.token_ids) for e in events if isinstance(e, TokenDelta)] == [
        ("hm", "reasoning", (0, 1)),
        ("\n\n", "answer", (2, 3)),
        ("Hi", "answer", (4,)),
    ]
    first = events[0]
    assert isinstance(first, TokenDelta) and first.logprobs is not None
    assert [lp.token for lp in first.logprobs] == ["<think>", "hm"]


@pytest.mark.anyio
async def test_once_in_the_answer_deltas_pass_as_they_are() -> None:
    pieces = ["Hello", " <think>", " there"]
    events = await parse(pieces)
    assert events[:-1] == [TokenDelta(p, (i,)) for i, p in enumerate(pieces)]


@pytest.mark.anyio
async def test_tags_are_configurable() -> None:
    events = await parse(["[R]x", "[/R]y"], open_tag="[R]", close_tag="[/R]")
    assert channels(events) == ("x", "y")
