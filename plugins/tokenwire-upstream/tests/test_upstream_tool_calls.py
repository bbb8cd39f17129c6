"""Tool-call fragments put in contract order: one call's deltas contiguous, id and name first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tokenwire_upstream._tool_calls import ToolCallFragment, ToolCallSequencer

from tokenwire import GenerationError, TokenDelta, ToolCallDelta


def sequencer() -> ToolCallSequencer:
    ids: Iterator[str] = (f"gen_{n}" for n in range(100))
    return ToolCallSequencer(new_id=lambda: next(ids))


def test_in_order_calls_stream_live_with_our_numbers() -> None:
    s = sequencer()
    assert s.text(TokenDelta("Checking.")) == [TokenDelta("Checking.")]
    # Upstream indices need not start at 0: ours do.
    assert s.tool_call(ToolCallFragment(3, "c1", "get_weather")) == [
        ToolCallDelta(0, "c1", "get_weather")
    ]
    assert s.tool_call(ToolCallFragment(3, arguments='{"city":')) == [
        ToolCallDelta(0, arguments='{"city":')
    ]
    assert s.tool_call(ToolCallFragment(3, arguments='"Paris"}')) == [
        ToolCallDelta(0, arguments='"Paris"}')
    ]
    # The first call's arguments are a whole object: the second goes out at once.
    assert s.tool_call(ToolCallFragment(4, "c2", "get_time", "{}")) == [
        ToolCallDelta(1, "c2", "get_time", "{}")
    ]
    assert s.finish() == [] and s.calls == 2


def test_interleaved_calls_are_held_until_the_live_one_is_complete() -> None:
    s = sequencer()
    out = s.tool_call(ToolCallFragment(0, "a", "first", '{"x":'))
    out += s.tool_call(ToolCallFragment(1, "b", "second", '{"y":'))
    out += s.tool_call(ToolCallFragment(0, arguments="1"))
    out += s.tool_call(ToolCallFragment(1, arguments="2"))
    assert out == [ToolCallDelta(0, "a", "first", '{"x":'), ToolCallDelta(0, arguments="1")]
    # Call 0 completes: call 1 follows with everything it gathered, then streams live.
    assert s.tool_call(ToolCallFragment(0, arguments="}")) == [
        ToolCallDelta(0, arguments="}"),
        ToolCallDelta(1, "b", "second", '{"y":2'),
    ]
    assert s.tool_call(ToolCallFragment(1, arguments="}")) == [ToolCallDelta(1, arguments="}")]
    assert s.finish() == []


def test_held_calls_and_text_come_out_in_order_when_the_stream_ends() -> None:
    s = sequencer()
    s.tool_call(ToolCallFragment(0, "a", "first", "{"))  # never completes
    assert s.tool_call(ToolCallFragment(1, "b", "second", "{}")) == []
    assert s.text(TokenDelta("after")) == []
    assert s.finish() == [ToolCallDelta(1, "b", "second", "{}"), TokenDelta("after")]


def test_a_call_waits_for_its_name_and_gets_an_id_when_the_server_sent_none() -> None:
    s = sequencer()
    assert s.tool_call(ToolCallFragment(0, arguments="{")) == []
    assert s.tool_call(ToolCallFragment(0, name="late")) == [ToolCallDelta(0, "gen_0", "late", "{")]


def test_fragments_without_index_are_told_apart_by_id() -> None:
    s = sequencer()
    out = s.tool_call(ToolCallFragment(None, "a", "one", '{"k":1}'))
    out += s.tool_call(ToolCallFragment(None, "b", "two", "{"))
    out += s.tool_call(ToolCallFragment(None, arguments="}"))
    assert out == [
        ToolCallDelta(0, "a", "one", '{"k":1}'),
        ToolCallDelta(1, "b", "two", "{"),
        ToolCallDelta(1, arguments="}"),
    ]


def test_more_arguments_after_a_closed_call_are_an_error() -> None:
    s = sequencer()
    s.tool_call(ToolCallFragment(0, "a", "one", "{}"))
    s.tool_call(ToolCallFragment(1, "b", "two", "{"))
    assert s.tool_call(ToolCallFragment(0, arguments=" ")) == []  # whitespace is harmless
    with pytest.raises(GenerationError, match="after its arguments ended"):
        s.tool_call(ToolCallFragment(0, arguments=',"more":1}'))


def test_a_call_that_never_got_a_name_fails_the_stream() -> None:
    s = sequencer()
    s.tool_call(ToolCallFragment(0, arguments="{}"))
    with pytest.raises(GenerationError, match="without a name"):
        s.finish()
