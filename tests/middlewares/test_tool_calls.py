"""The tool-call parser middleware: markup in text becomes streamed `ToolCallDelta`s."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenwire.completion import CompletionBuilder
from tokenwire.events import Event, Finish, FinishReason, TokenDelta, TokenLogprob, ToolCallDelta
from tokenwire.middlewares.tool_calls import ToolCallParserMiddleware
from tokenwire.requests import GenerationRequest, Tool, ToolChoice

TOOLS = (Tool("get_weather"),)
HERMES = (
    'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris <tool_call>",'
    ' "n": [1, {"q": "}\\""}]}}\n</tool_call>\n<tool_call>\n{"arguments": {"x": 1}, "name":'
    ' "get_time"}\n</tool_call>\n'
)
HERMES_CALLS = [
    ("get_weather", '{"city": "Paris <tool_call>", "n": [1, {"q": "}\\""}]}'),
    ("get_time", '{"x": 1}'),
]
SAMPLES = {
    "hermes": [
        (HERMES, "Let me check.\n", HERMES_CALLS),
        ('<tool_call>{"name": "f"}</tool_call> and then', " and then", [("f", "{}")]),
        ('<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}', "", [("f", '{"a": 1}')]),
        # No closing marker before the next call (Qwen does this): still two calls.
        (
            '<tool_call>{"name": "a", "arguments": {}}<tool_call>{"name": "b", "arguments": {}}',
            "",
            [("a", "{}"), ("b", "{}")],
        ),
        (
            'a <tool_call>{"nam": 1}</tool_call> <tool_',
            'a <tool_call>{"nam": 1}</tool_call> <tool_',
            [],
        ),
        ("<tool_call>not json</tool_call>", "<tool_call>not json</tool_call>", []),
        ("x < y and [TOOL_CALLS]", "x < y and [TOOL_CALLS]", []),
    ],
    "llama3_json": [
        (
            ' {"name": "f", "parameters": {"a": 1}}; {"name": "g", "parameters": {}}',
            "",
            [("f", '{"a": 1}'), ("g", "{}")],
        ),
        ('Sure: <|python_tag|>{"name": "f", "parameters": {}}', "Sure: ", [("f", "{}")]),
        ('I would send {"name": "f"} here', 'I would send {"name": "f"} here', []),
        ('{"nope": 1} left', '{"nope": 1} left', []),
    ],
    "mistral": [
        (
            'ok [TOOL_CALLS] [{"name": "f", "arguments": {"a": [1]}}, {"name":"g","arguments":{}}] bye',
            "ok  bye",
            [("f", '{"a": [1]}'), ("g", "{}")],
        ),
        ("[TOOL_CALLS] oops", "[TOOL_CALLS] oops", []),
    ],
}
CASES = [(fmt, *sample) for fmt, samples in SAMPLES.items() for sample in samples]


def request(**fields: object) -> GenerationRequest:
    fields.setdefault("tools", TOOLS)
    return GenerationRequest(model="m", prompt="p", **fields)  # type: ignore[arg-type]


def script(pieces: Sequence[str], reason: FinishReason = "stop", logprobs: bool = False):  # type: ignore[no-untyped-def]
    async def generate(request: GenerationRequest) -> AsyncIterator[Event]:
        for index, piece in enumerate(pieces):
            lp = (TokenLogprob(piece, -0.5),) if logprobs else None
            yield TokenDelta(piece, (index,), lp)
        yield Finish(reason)

    return generate


async def parse(
    pieces: Sequence[str], fmt: str = "hermes", reason: FinishReason = "stop", **fields: object
) -> list[Event]:
    middleware = ToolCallParserMiddleware(script(pieces, reason), format=fmt)
    return [event async for event in middleware(request(**fields))]


def summary(events: list[Event]) -> tuple[str, list[tuple[str, str]], str]:
    """The answer text, the calls (name, arguments) and the finish reason; checks the contract."""
    builder = CompletionBuilder()
    started: list[int] = []
    for event in events[:-1]:
        builder.add(event)
        if isinstance(event, ToolCallDelta):
            if event.name is not None:
                assert event.index == len(started)  # numbered from 0 in order
                assert event.id is not None and re.fullmatch(r"call_[0-9a-f]{24}", event.id)
                started.append(event.index)
            else:
                assert started and event.index == started[-1]  # contiguous, after its start
    finish = events[-1]
    assert isinstance(finish, Finish)
    completion = builder.build(finish)
    return completion.text, [(c.name, c.arguments) for c in completion.tool_calls], finish.reason


def whole(pieces: Sequence[str], fmt: str) -> tuple[str, list[tuple[str, str]], str]:
    return summary(anyio.run(lambda: parse(pieces, fmt)))


@pytest.mark.parametrize(("fmt", "text", "answer", "calls"), CASES)
def test_markup_becomes_calls_and_the_rest_stays_text(
    fmt: str, text: str, answer: str, calls: list[tuple[str, str]]
) -> None:
    reason = "tool_calls" if calls else "stop"
    assert whole([text], fmt) == (answer, calls, reason)
    for args in (c[1] for c in calls):
        json.loads(args)


@pytest.mark.parametrize(("fmt", "text", "answer", "calls"), CASES)
def test_a_split_at_every_character_gives_the_same_calls_and_text(
    fmt: str, text: str, answer: str, calls: list[tuple[str, str]]
) -> None:
    assert whole(list(text), fmt) == whole([text], fmt)


@settings(max_examples=60, deadline=None, database=None)
@given(case=st.sampled_from(CASES), cuts=st.sets(st.integers(min_value=1, max_value=200)))
def test_any_split_into_deltas_gives_the_same_calls_and_text(
    case: tuple[str, str, str, list[tuple[str, str]]], cuts: set[int]
) -> None:
    fmt, text, answer, calls = case
    bounds = [0, *sorted(c for c in cuts if c < len(text)), len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert whole(pieces, fmt) == (answer, calls, "tool_calls" if calls else "stop")


@pytest.mark.anyio
async def test_the_name_leaves_before_the_arguments_arrive_and_they_stream_in_fragments() -> None:
    pieces = [
        "<tool_",
        'call>{"name": "get_',
        'weather", "argu',
        'ments": {"city"',
        ': "Rome"}}',
        "</tool_call>",
    ]
    events = await parse(pieces)
    assert events[0] == ToolCallDelta(0, events[0].id, "get_weather", "", (0, 1, 2))  # type: ignore[union-attr]
    assert events[1:] == [
        ToolCallDelta(0, arguments='{"city"', token_ids=(3,)),
        ToolCallDelta(0, arguments=': "Rome"}', token_ids=(4,)),
        ToolCallDelta(0, token_ids=(5,)),  # the closing marker, counted with its call
        Finish("tool_calls"),
    ]


@pytest.mark.anyio
async def test_every_token_id_is_counted_once() -> None:
    pieces = list(HERMES)
    events = await parse(pieces)
    ids = [i for e in events if isinstance(e, (TokenDelta, ToolCallDelta)) for i in e.token_ids]
    assert ids == list(range(len(pieces)))


@pytest.mark.anyio
async def test_text_deltas_keep_their_logprobs() -> None:
    middleware = ToolCallParserMiddleware(
        script(["a <", "b", '<tool_call>{"name": "f"}'], logprobs=True)
    )
    events = [event async for event in middleware(request())]
    texts = [e for e in events if isinstance(e, TokenDelta)]
    assert "".join(t.text for t in texts) == "a <b"
    assert [lp.token for t in texts for lp in t.logprobs or ()] == ["a <", "b"]


@pytest.mark.anyio
async def test_requests_without_tools_pass_through_untouched() -> None:
    inner = script(['<tool_call>{"name": "f"}</tool_call>'])
    middleware = ToolCallParserMiddleware(inner)
    for plain in (request(tools=()), request(tool_choice=ToolChoice("none"))):
        stream = middleware(plain)
        assert stream.__qualname__.startswith("script.")  # type: ignore[attr-defined]
        events = [event async for event in stream]
        assert events == [TokenDelta('<tool_call>{"name": "f"}</tool_call>', (0,)), Finish("stop")]


@pytest.mark.anyio
async def test_reasoning_deltas_and_a_length_finish_pass_unchanged() -> None:
    async def generate(request: GenerationRequest) -> AsyncIterator[Event]:
        yield TokenDelta("<tool_call>", (0,), channel="reasoning")
        yield TokenDelta('<tool_call>{"name": "f", "arguments": {"a', (1,))
        yield Finish("length")

    events = [e async for e in ToolCallParserMiddleware(generate)(request())]
    assert events[0] == TokenDelta("<tool_call>", (0,), channel="reasoning")
    assert summary(events)[1:] == ([("f", '{"a')], "length")


def test_an_unknown_format_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="hermes, llama3_json, mistral"):
        ToolCallParserMiddleware(script([]), format="xml")
