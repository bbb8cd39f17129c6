import json

import anyio
import jsonschema
import pytest

from tokenwire import ChatMessage, Finish, GenerationRequest, TokenDelta
from tokenwire.backends._echo_agent import example_from_schema
from tokenwire.backends.echo import EchoBackend, split_words
from tokenwire.completion import Completion, CompletionBuilder
from tokenwire.errors import InvalidRequestError
from tokenwire.events import Event, Progress, TokenLogprob, ToolCallDelta
from tokenwire.requests import OutputConstraint, Tool, ToolChoice


async def run(backend: EchoBackend, request: GenerationRequest) -> tuple[list[str], Finish]:
    texts: list[str] = []
    async for event in backend.generate(request):
        if isinstance(event, TokenDelta):
            texts.append(event.text)
        elif isinstance(event, Finish):
            return texts, event
    raise AssertionError("no Finish")


def chat(text: str, **fields: object) -> GenerationRequest:
    messages = (
        ChatMessage("system", "be brief"),
        ChatMessage("user", "first"),
        ChatMessage("user", text),
    )
    return GenerationRequest(model="echo", messages=messages, **fields)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_echoes_last_user_message_one_word_per_token() -> None:
    texts, finish = await run(EchoBackend(), chat("Hello  wide 世界 👋🏽 ok"))
    assert texts == ["Hello", "  wide", " 世界", " 👋🏽", " ok"]
    assert finish.reason == "stop"
    assert finish.usage.completion_tokens == 5
    assert finish.usage.prompt_tokens == 2 + 1 + 5


@pytest.mark.anyio
async def test_the_prefill_note_and_count_tokens_state_the_prompt_usage() -> None:
    request = chat("Hello  wide 世界 👋🏽 ok")
    backend = EchoBackend()
    events = [event async for event in backend.generate(request)]
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert events[0] == Progress("prefill", finish.usage.prompt_tokens)
    assert await backend.count_tokens(request) == finish.usage.prompt_tokens == 8


@pytest.mark.anyio
async def test_max_tokens_cuts_with_length() -> None:
    texts, finish = await run(
        EchoBackend(), GenerationRequest(model="echo", prompt="a b c d", max_tokens=2)
    )
    assert texts == ["a", " b"]
    assert finish.reason == "length"
    assert finish.usage.completion_tokens == 2


@pytest.mark.anyio
async def test_stop_string_ends_before_it_and_is_reported() -> None:
    request = GenerationRequest(model="echo", prompt="one two three four", stop=("ee f",))
    texts, finish = await run(EchoBackend(), request)
    assert "".join(texts) == "one two thr"
    assert (finish.reason, finish.stop_sequence) == ("stop", "ee f")


@pytest.mark.anyio
async def test_delay_paces_tokens() -> None:
    start = anyio.current_time()
    await run(EchoBackend(delay=0.02), GenerationRequest(model="echo", prompt="a b c"))
    assert anyio.current_time() - start >= 0.06


def test_words_join_back_to_the_text() -> None:
    text = "  lead\tand trail \n"
    assert "".join(split_words(text)) == text


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay must be >= 0"):
        EchoBackend(delay=-1)


# Agent rules: tool calls, output constraints, logprobs and reasoning.

WEATHER = Tool(
    "get_weather",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 3, "maxLength": 5},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "when": {
                "type": "object",
                "properties": {"hour": {"type": "number", "exclusiveMinimum": 3}},
                "required": ["hour"],
            },
            "tags": {"type": "array", "items": {"type": "boolean"}, "minItems": 2},
            "note": {"type": "string"},
        },
        "required": ["city", "unit", "days", "when", "tags"],
    },
)
TIME = Tool("get_time", parameters={"type": "object", "properties": {}})


async def events_of(request: GenerationRequest) -> list[Event]:
    """The stream after its opening prefill note."""
    events = [event async for event in EchoBackend().generate(request)]
    assert isinstance(events[0], Progress) and events[0].phase == "prefill"
    return events[1:]


def built(events: list[Event]) -> Completion:
    builder = CompletionBuilder()
    for event in events[:-1]:
        builder.add(event)
    finish = events[-1]
    assert isinstance(finish, Finish)
    return builder.build(finish)


@pytest.mark.anyio
async def test_auto_tool_choice_calls_the_tool_the_user_names_with_schema_valid_arguments() -> None:
    events = await events_of(chat("please call get_weather now", tools=(WEATHER, TIME)))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert not any(isinstance(e, TokenDelta) for e in events)
    assert calls[0].name == "get_weather" and calls[0].id and calls[0].id.startswith("call_")
    assert all(c.index == 0 and c.id is None and c.name is None for c in calls[1:])
    assert len(calls) > 3  # the arguments arrive in several fragments
    completion = built(events)
    arguments = json.loads(completion.tool_calls[0].arguments)
    jsonschema.validate(arguments, WEATHER.parameters)
    assert arguments == {
        "city": "aaa",
        "unit": "celsius",
        "days": 1,
        "when": {"hour": 3.5},
        "tags": [False, False],
    }
    assert completion.finish.reason == "tool_calls"
    assert completion.finish.usage.completion_tokens == len(calls)
    assert [c.token_ids for c in calls] == [(n,) for n in range(1, len(calls) + 1)]


@pytest.mark.anyio
async def test_tool_call_ids_are_stable_across_identical_requests() -> None:
    first = await events_of(chat("get_time please", tools=(TIME,)))
    second = await events_of(chat("get_time please", tools=(TIME,)))
    other = await events_of(chat("get_time now", tools=(TIME,)))
    assert first == second
    assert first[0] != other[0]


@pytest.mark.anyio
async def test_auto_without_a_named_tool_echoes_and_none_never_calls() -> None:
    plain = built(await events_of(chat("hello there", tools=(WEATHER,))))
    assert (plain.text, plain.tool_calls, plain.finish.reason) == ("hello there", (), "stop")
    refused = built(
        await events_of(chat("get_weather", tools=(WEATHER,), tool_choice=ToolChoice("none")))
    )
    assert (refused.text, refused.tool_calls) == ("get_weather", ())


@pytest.mark.anyio
async def test_required_calls_the_first_allowed_tool_even_unnamed() -> None:
    some = built(
        await events_of(chat("hi", tools=(WEATHER, TIME), tool_choice=ToolChoice("required")))
    )
    assert [c.name for c in some.tool_calls] == ["get_weather"]
    named = built(
        await events_of(
            chat("hi", tools=(WEATHER, TIME), tool_choice=ToolChoice("required", ("get_time",)))
        )
    )
    assert [(c.name, c.arguments) for c in named.tool_calls] == [("get_time", "{}")]


@pytest.mark.anyio
async def test_required_naming_an_unknown_tool_is_refused() -> None:
    request = chat("hi", tools=(TIME,), tool_choice=ToolChoice("required", ("nope",)))
    with pytest.raises(InvalidRequestError) as info:
        await events_of(request)
    assert info.value.param == "tool_choice"


@pytest.mark.anyio
async def test_parallel_calls_follow_the_order_of_mention_and_can_be_turned_off() -> None:
    text = "first get_time then get_weather"
    both = built(await events_of(chat(text, tools=(WEATHER, TIME))))
    assert [c.name for c in both.tool_calls] == ["get_time", "get_weather"]
    assert len({c.id for c in both.tool_calls}) == 2
    one = built(await events_of(chat(text, tools=(WEATHER, TIME), parallel_tool_calls=False)))
    assert [c.name for c in one.tool_calls] == ["get_time"]


@pytest.mark.anyio
async def test_max_tokens_cuts_a_tool_call_with_length() -> None:
    events = await events_of(chat("get_weather", tools=(WEATHER,), max_tokens=2))
    assert len(events) == 3
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.reason, finish.usage.completion_tokens) == ("length", 2)


@pytest.mark.anyio
async def test_json_schema_constraint_answers_the_schemas_example() -> None:
    constraint = OutputConstraint("json_schema", schema=WEATHER.parameters)
    completion = built(await events_of(chat("anything", constraint=constraint)))
    jsonschema.validate(json.loads(completion.text), WEATHER.parameters)
    assert completion.finish.usage.completion_tokens == len(split_words(completion.text))


@pytest.mark.anyio
async def test_json_object_constraint_wraps_the_echo_in_an_object() -> None:
    completion = built(
        await events_of(chat('say "hi"', constraint=OutputConstraint("json_object")))
    )
    assert json.loads(completion.text) == {"echo": 'say "hi"'}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["regex", "grammar"])
async def test_regex_and_grammar_constraints_are_refused_before_any_event(kind: str) -> None:
    request = chat("x", constraint=OutputConstraint(kind, pattern="a+"))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError) as info:
        await events_of(request)
    assert info.value.param == "response_format"
    assert kind in info.value.message


@pytest.mark.anyio
async def test_logprobs_give_each_token_certainty_and_deterministic_alternatives() -> None:
    events = await events_of(chat("to be", logprobs=True, top_logprobs=3))
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    assert [d.logprobs for d in deltas] == [
        (TokenLogprob("to", 0.0, (("to", 0.0), ("the", -10.0), ("a", -20.0))),),
        (TokenLogprob(" be", 0.0, ((" be", 0.0), (" the", -10.0), (" a", -20.0))),),
    ]
    without_top = await events_of(chat("to", logprobs=True))
    assert isinstance(without_top[0], TokenDelta)
    assert without_top[0].logprobs == (TokenLogprob("to", 0.0, ()),)
    assert isinstance((await events_of(chat("to")))[0], TokenDelta)
    assert (await events_of(chat("to")))[0] == TokenDelta("to", (1,))


@pytest.mark.anyio
async def test_reasoning_comes_first_on_its_channel_and_counts_as_completion_tokens() -> None:
    events = await events_of(chat("a b c", reasoning=True))
    completion = built(events)
    assert completion.reasoning == "Echoing 3 words."
    assert completion.text == "a b c"
    channels = [e.channel for e in events if isinstance(e, TokenDelta)]
    assert channels == ["reasoning"] * 3 + ["answer"] * 3
    assert completion.finish.usage.completion_tokens == 6


@pytest.mark.anyio
async def test_stop_string_counts_reasoning_tokens_before_the_answer() -> None:
    texts, finish = await run(EchoBackend(), chat("one two three", reasoning=True, stop=("two",)))
    assert "".join(texts) == "Echoing 3 words.one "
    assert finish.usage.completion_tokens == 5


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "format": "date"}, "1970-01-01"),
        ({"type": "string", "maxLength": 0}, ""),
        ({"type": "integer", "minimum": 5, "multipleOf": 3}, 6),
        ({"type": "integer", "maximum": -2}, -2),
        ({"type": "integer", "exclusiveMaximum": 0}, -1),
        ({"type": ["null", "boolean"]}, False),
        ({"anyOf": [{"type": "string", "minLength": 2}, {"type": "null"}]}, "aa"),
        ({"const": 42}, 42),
        (
            {
                "$defs": {
                    "p": {
                        "type": "object",
                        "properties": {"x": {"type": "integer"}},
                        "required": ["x"],
                    }
                },
                "type": "array",
                "items": {"$ref": "#/$defs/p"},
                "minItems": 1,
            },
            [{"x": 0}],
        ),
        ({"allOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"a": None, "b": None}),
    ],
)
def test_schema_examples_are_minimal_and_valid(schema: dict[str, object], expected: object) -> None:
    value = example_from_schema(schema)
    assert value == expected
    if "allOf" not in schema:
        jsonschema.validate(value, schema)
