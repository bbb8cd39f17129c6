"""`EventFeed`: what merges while the client is behind, and what never does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio
import pytest

from tokenwire.events import Event, Finish, Progress, TokenDelta, TokenLogprob, ToolCallDelta
from tokenwire.send_buffers import SendBuffers
from tokenwire.transports._backpressure import EventFeed, FrameBuffer

pytestmark = pytest.mark.anyio


async def fed_behind(events: Sequence[Event]) -> tuple[list[Event], SendBuffers]:
    """The events as the dialect gets them when the client fell behind before the first."""
    accounts = SendBuffers()
    frames = FrameBuffer(1024, accounts)
    assert frames.offer(b"x" * 1024)
    frames.sending = True  # a write is stuck: the client is behind

    async def source() -> AsyncIterator[Event]:
        for event in events:
            yield event

    feed = EventFeed(frames, source())
    out: list[Event] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            feed.task_group = tg
            assert frames.on_behind is not None
            frames.on_behind()
            async for event in feed.events():
                out.append(event)
    return out, accounts


async def test_a_tool_calls_fragments_merge_into_its_first_delta_but_never_across_calls() -> None:
    events = [
        TokenDelta("Sure", (1,)),
        TokenDelta(".", (2,)),
        ToolCallDelta(0, "call_a", "f", "", (3,)),
        ToolCallDelta(0, arguments='{"x"', token_ids=(4,)),
        ToolCallDelta(0, arguments=": 1}", token_ids=(5,)),
        ToolCallDelta(1, "call_b", "g", '{"y', (6,)),
        Progress("decode"),
        ToolCallDelta(1, arguments='": 2}', token_ids=(7,)),
        TokenDelta("after", (8,)),
        Finish("tool_calls"),
    ]
    out, accounts = await fed_behind(events)
    assert out == [
        TokenDelta("Sure.", (1, 2)),
        ToolCallDelta(0, "call_a", "f", '{"x": 1}', (3, 4, 5)),
        ToolCallDelta(1, "call_b", "g", '{"y": 2}', (6, 7)),
        TokenDelta("after", (8,)),
        Finish("tool_calls"),
    ]
    assert accounts.bytes == 1024  # the merged text and arguments were all given back


async def test_reasoning_never_merges_with_the_answer_and_logprobs_concatenate() -> None:
    a, b, c = (TokenLogprob(t, -1.0) for t in "abc")
    events = [
        TokenDelta("th", (1,), (a,), "reasoning"),
        TokenDelta("ink", (2,), (b,), "reasoning"),
        TokenDelta("Hi", (3,), (c,)),
        TokenDelta("!", (4,), ()),
        Finish("stop"),
    ]
    out, _ = await fed_behind(events)
    assert out == [
        TokenDelta("think", (1, 2), (a, b), "reasoning"),
        TokenDelta("Hi!", (3, 4), (c,)),
        Finish("stop"),
    ]


async def test_text_never_merges_into_a_tool_call_nor_a_call_into_text() -> None:
    events = [
        ToolCallDelta(0, "call_a", "f", "{}", (1,)),
        TokenDelta(" ", (2,)),
        ToolCallDelta(0, token_ids=(3,)),
        Finish("tool_calls"),
    ]
    out, _ = await fed_behind(events)
    assert out == events
