"""CompletionBuilder: a stream's events gathered into one Completion."""

from tokenwire import Finish, TokenDelta, TokenLogprob, ToolCall, ToolCallDelta, Usage
from tokenwire.completion import CompletionBuilder


def test_text_reasoning_calls_and_logprobs_are_gathered_apart() -> None:
    builder = CompletionBuilder()
    first = TokenLogprob("Hi", -0.1, (("Hi", -0.1), ("Yo", -2.5)))
    for event in (
        TokenDelta("thinking…", channel="reasoning"),
        TokenDelta("Hi", logprobs=(first,)),
        TokenDelta(" there", logprobs=(TokenLogprob(" there", -0.2),)),
        ToolCallDelta(0, id="call_a", name="weather"),
        ToolCallDelta(0, arguments='{"city": '),
        ToolCallDelta(0, arguments='"Paris"}'),
        ToolCallDelta(1, id="call_b", name="time"),
    ):
        builder.add(event)
    finish = Finish("tool_calls", Usage(3, 9))
    done = builder.build(finish)
    assert (done.text, done.reasoning, done.finish) == ("Hi there", "thinking…", finish)
    assert done.tool_calls == (
        ToolCall("call_a", "weather", '{"city": "Paris"}'),
        ToolCall("call_b", "time", "{}"),
    )
    assert done.logprobs is not None and [p.token for p in done.logprobs] == ["Hi", " there"]


def test_no_logprobs_asked_means_none() -> None:
    builder = CompletionBuilder()
    builder.add(TokenDelta("x"))
    assert builder.build(Finish("stop")).logprobs is None
