"""Constrained decoding on the tiny random model: the mask alone makes its output valid."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from tests.backends.onnx._helpers import collect, request, running
from tokenwire.errors import InvalidRequestError
from tokenwire.events import TokenDelta
from tokenwire.requests import ChatMessage, GenerationRequest, OutputConstraint, Tool, ToolChoice

pytestmark = pytest.mark.anyio

SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 8}, "ok": {"type": "boolean"}},
        "required": ["name", "ok"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 3, "maximum": 9},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        },
        "required": ["n", "tags"],
        "additionalProperties": False,
    },
    {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 4},
]

WEATHER = Tool(
    "get_weather",
    "The weather in a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
CLOCK = Tool(
    "get_time", "The time.", {"type": "object", "properties": {}, "additionalProperties": False}
)

HERMES = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.DOTALL)


def constrained(
    constraint: OutputConstraint, max_tokens: int = 120, **fields: Any
) -> GenerationRequest:
    return request("Once upon a time", max_tokens, constraint=constraint, **fields)


@pytest.mark.parametrize("schema", SCHEMAS, ids=["object", "bounds-enum", "array"])
async def test_json_schema_output_is_valid_under_the_schema(
    model_dir: Path, schema: dict[str, Any]
) -> None:
    async with running(model_dir) as backend:
        for seed in range(3):
            result = await collect(
                backend,
                constrained(
                    OutputConstraint("json_schema", schema=schema), temperature=1.0, seed=seed
                ),
            )
            assert result.finish.reason == "stop", result.text
            jsonschema.validate(json.loads(result.text), schema)


async def test_json_object_output_is_an_object(model_dir: Path) -> None:
    async with running(model_dir) as backend:
        result = await collect(backend, constrained(OutputConstraint("json_object"), 200))
    if result.finish.reason == "stop":
        assert isinstance(json.loads(result.text), dict)
    else:  # a random model may write a long object: what there is must be one's beginning
        assert result.text.lstrip().startswith("{")


async def test_regex_output_matches_the_pattern(model_dir: Path) -> None:
    pattern = r"(yes|no): [a-z]{2,6}( [a-z]{2,6}){0,2}\."
    async with running(model_dir) as backend:
        for seed in range(3):
            result = await collect(
                backend,
                constrained(OutputConstraint("regex", pattern=pattern), temperature=1.0, seed=seed),
            )
            assert result.finish.reason == "stop"
            assert re.fullmatch(pattern, result.text), result.text


async def test_lark_grammar_output_is_in_the_language(model_dir: Path) -> None:
    grammar = 'start: "sum(" NUM ("," NUM)* ")"\nNUM: /[0-9]{1,3}/'
    async with running(model_dir) as backend:
        result = await collect(backend, constrained(OutputConstraint("grammar", pattern=grammar)))
    assert result.finish.reason == "stop"
    assert re.fullmatch(r"sum\([0-9]{1,3}(,[0-9]{1,3})*\)", result.text), result.text


@pytest.mark.parametrize(
    ("constraint", "param"),
    [
        (OutputConstraint("json_schema", schema={"type": "nonsense"}), "response_format"),
        (OutputConstraint("regex", pattern="a(("), "response_format"),
        (OutputConstraint("grammar", pattern="start: ("), "response_format"),
        (OutputConstraint("json_schema"), "response_format"),
    ],
    ids=["schema", "regex", "grammar", "no-schema"],
)
async def test_invalid_constraint_is_refused_before_the_first_event(
    tiny_model_dirs: dict[str, Path], constraint: OutputConstraint, param: str
) -> None:
    async with running(tiny_model_dirs["shared"]) as backend:
        stream = backend.generate(constrained(constraint))
        with pytest.raises(InvalidRequestError) as caught:
            await stream.__anext__()
        assert caught.value.param == param and caught.value.status_code == 400
        assert backend.stats.free_slots == backend.max_batch


def chat(**fields: Any) -> GenerationRequest:
    """A forced call on a raw prompt: the tiny model's context has no room for the tools'
    description (tests/backends/onnx/test_tool_prompt.py covers it)."""
    fields.setdefault("temperature", 1.0)
    fields.setdefault("max_tokens", 160)
    return GenerationRequest(
        model="tiny", prompt="What is the weather in Paris?", tools=(WEATHER, CLOCK), **fields
    )


def calls_in(text: str) -> list[dict[str, Any]]:
    blocks = HERMES.findall(text)
    assert HERMES.sub("", text).strip() == "", text  # nothing but tool-call blocks
    return [json.loads(block) for block in blocks]


async def test_named_tool_choice_forces_one_schema_valid_call(model_dir: Path) -> None:
    async with running(model_dir) as backend:
        for seed in range(3):
            result = await collect(
                backend,
                chat(
                    tool_choice=ToolChoice("required", ("get_weather",)),
                    parallel_tool_calls=False,
                    seed=seed,
                ),
            )
            assert result.finish.reason == "stop"
            (call,) = calls_in(result.text)
            assert call["name"] == "get_weather"
            jsonschema.validate(call["arguments"], WEATHER.parameters)


async def test_required_tool_choice_calls_only_offered_tools(model_dir: Path) -> None:
    schemas = {tool.name: tool.parameters for tool in (WEATHER, CLOCK)}
    async with running(model_dir) as backend:
        for seed in range(4):
            result = await collect(
                backend, chat(tool_choice=ToolChoice("required"), seed=seed, max_tokens=220)
            )
            if result.finish.reason == "length":  # parallel calls may run out: keep whole ones
                result_text = result.text[: result.text.rfind("</tool_call>") + len("</tool_call>")]
            else:
                result_text = result.text
            calls = calls_in(result_text)
            assert calls
            for call in calls:
                jsonschema.validate(call["arguments"], schemas[call["name"]])


@pytest.mark.parametrize(
    "choice",
    [ToolChoice("required", ("nope",)), ToolChoice("required")],
    ids=["unknown", "no-tools"],
)
async def test_impossible_tool_choice_is_refused(
    tiny_model_dirs: dict[str, Path], choice: ToolChoice
) -> None:
    tools = (WEATHER,) if choice.names else ()
    req = GenerationRequest(
        model="tiny", messages=(ChatMessage("user", "hi"),), tools=tools, tool_choice=choice
    )
    async with running(tiny_model_dirs["shared"]) as backend:
        with pytest.raises(InvalidRequestError) as caught:
            await backend.generate(req).__anext__()
    assert caught.value.param == "tool_choice"


async def test_reasoning_is_refused_for_a_model_that_cannot_think(
    tiny_model_dirs: dict[str, Path],
) -> None:
    async with running(tiny_model_dirs["shared"]) as backend:
        with pytest.raises(InvalidRequestError) as caught:
            await backend.generate(request("hi", reasoning=True)).__anext__()
        assert caught.value.param == "reasoning"
        off = await collect(backend, request("hi", 4, reasoning=False))
    assert off.finish.reason in ("stop", "length")


async def test_logprobs_have_one_entry_per_token_matching_the_log_softmax(model_dir: Path) -> None:
    from tests.backends.onnx.tiny_models import ReferenceModel

    async with running(model_dir) as backend:
        assert backend.tokenizer is not None
        prompt = backend.tokenizer.encode("Once upon a time", add_special_tokens=True).ids
        result = await collect(
            backend, request("Once upon a time", 12, logprobs=True, top_logprobs=3)
        )
        plain = await collect(backend, request("Once upon a time", 12))
    assert all(d.logprobs is None for d in plain.deltas)
    entries = [lp for d in result.deltas for lp in (d.logprobs or ())]
    assert all(len(d.logprobs or ()) == len(d.token_ids) for d in result.deltas)
    assert len(entries) == len(result.ids) > 0
    reference = ReferenceModel(model_dir)
    ids = result.ids
    for position, entry in enumerate(entries):
        logits = reference.logits(prompt + ids[:position]).astype(np.float64)
        expected = logits - logits.max() - math.log(np.exp(logits - logits.max()).sum())
        assert entry.logprob == pytest.approx(expected[ids[position]], abs=1e-3)
        assert len(entry.top) == 3
        assert [lp for _, lp in entry.top] == sorted((lp for _, lp in entry.top), reverse=True)
        assert entry.top[0][1] == pytest.approx(expected.max(), abs=1e-3)
        assert entry.logprob <= entry.top[0][1] + 1e-9


async def test_constrained_stream_inside_a_batch_matches_it_alone(model_dir: Path) -> None:
    schema = SCHEMAS[1]
    req = constrained(OutputConstraint("json_schema", schema=schema))
    async with running(model_dir, max_batch=4) as backend:
        alone = await collect(backend, req)
        import anyio

        results: dict[int, Any] = {}

        async def one(index: int, item: GenerationRequest) -> None:
            results[index] = await collect(backend, item)

        async with anyio.create_task_group() as group:
            group.start_soon(one, 0, req)
            for index in range(1, 4):
                group.start_soon(one, index, request(f"Story {index}", 40))
    assert results[0].text == alone.text
    assert all(isinstance(d, TokenDelta) for d in results[0].deltas)
