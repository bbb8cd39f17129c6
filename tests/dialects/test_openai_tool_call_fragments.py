"""A tool call's JSON arguments, split anywhere into `ToolCallDelta` fragments, come back whole
through the openai SDK's own stream accumulator."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from tokenwire.dialects import OpenAIChatDialect
from tokenwire.events import Event, Finish, ToolCallDelta

MODEL = "tw-model"
TOOLS = [
    {"type": "function", "function": {"name": "f"}},
    {"type": "function", "function": {"name": "g"}},
]

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_arguments = st.dictionaries(st.text(), _json, max_size=5).map(
    lambda value: json.dumps(value, ensure_ascii=False)
)


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(cut % (len(text) + 1) for cut in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


def accumulate(events: list[Event]) -> Any:
    exchange = OpenAIChatDialect().parse(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "x"}],
            "tools": TOOLS,
            "stream": True,
        },
        {},
        "req_1",
        MODEL,
    )
    state = ChatCompletionStreamState()
    payloads = [*exchange.open()]
    for event in events:
        payloads.extend(exchange.render(event))
    for payload in payloads:
        if not payload.sentinel:
            state.handle_chunk(ChatCompletionChunk.model_validate_json(payload.data))
    return state.get_final_completion().choices[0]


def call_events(index: int, call_id: str, name: str, fragments: list[str]) -> list[Event]:
    first, *rest = fragments or [""]
    return [
        ToolCallDelta(index, call_id, name, first),
        *(ToolCallDelta(index, arguments=f) for f in rest),
    ]


@settings(max_examples=150, deadline=None)
@given(
    _arguments,
    st.lists(st.integers(min_value=0), max_size=12),
    _arguments,
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_arguments_split_anywhere_reassemble_through_the_sdk(
    first: str, first_cuts: list[int], second: str, second_cuts: list[int]
) -> None:
    events = [
        *call_events(0, "call_a", "f", split(first, first_cuts)),
        *call_events(1, "call_b", "g", split(second, second_cuts)),
        Finish("tool_calls"),
    ]
    choice = accumulate(events)
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [(c.id, c.function.name) for c in calls] == [("call_a", "f"), ("call_b", "g")]
    assert [c.function.arguments for c in calls] == [first, second]
    assert [json.loads(c.function.arguments) for c in calls] == [
        json.loads(first),
        json.loads(second),
    ]


@settings(max_examples=50, deadline=None)
@given(_arguments)
def test_arguments_sent_one_character_at_a_time_reassemble(arguments: str) -> None:
    choice = accumulate([*call_events(0, "call_a", "f", list(arguments)), Finish("tool_calls")])
    assert choice.message.tool_calls[0].function.arguments == arguments
