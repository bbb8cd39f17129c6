"""Constrained decoding on the real SmolLM2 int8: valid JSON for many schemas, forced calls."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest

from tests.backends.onnx._helpers import collect, running
from tokenwire.requests import ChatMessage, GenerationRequest, OutputConstraint, Tool, ToolChoice

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


STR = {"type": "string", "maxLength": 24}
INT = {"type": "integer", "minimum": 0, "maximum": 100}
NUM = {"type": "number", "minimum": -10, "maximum": 10}

SCHEMAS: list[tuple[str, dict[str, Any]]] = [
    ("a person", _obj({"name": STR, "age": INT})),
    (
        "a city",
        _obj({"city": STR, "country": STR, "population": {"type": "integer", "minimum": 1}}),
    ),
    (
        "a book",
        _obj(
            {
                "title": STR,
                "author": STR,
                "year": {"type": "integer", "minimum": 1400, "maximum": 2030},
            }
        ),
    ),
    ("a colour", _obj({"colour": {"enum": ["red", "green", "blue"]}})),
    ("a yes/no answer", _obj({"answer": {"type": "boolean"}, "reason": STR})),
    ("a temperature", _obj({"celsius": NUM, "unit": {"const": "C"}})),
    (
        "three fruits",
        _obj({"fruits": {"type": "array", "items": STR, "minItems": 3, "maxItems": 3}}),
    ),
    ("a list of numbers", _obj({"numbers": {"type": "array", "items": INT, "maxItems": 5}})),
    (
        "an address",
        _obj(
            {
                "address": _obj(
                    {"street": STR, "city": STR, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}
                )
            }
        ),
    ),
    (
        "a product",
        _obj(
            {
                "name": STR,
                "price": {"type": "number", "minimum": 0, "maximum": 1000},
                "in_stock": {"type": "boolean"},
            }
        ),
    ),
    (
        "a movie rating",
        _obj({"movie": STR, "stars": {"type": "integer", "minimum": 1, "maximum": 5}}),
    ),
    ("a pet", _obj({"kind": {"enum": ["cat", "dog", "fish"]}, "name": STR, "age": INT})),
    (
        "a team",
        _obj(
            {
                "team": STR,
                "members": {
                    "type": "array",
                    "items": _obj({"name": STR, "role": STR}),
                    "minItems": 1,
                    "maxItems": 3,
                },
            }
        ),
    ),
    (
        "a recipe",
        _obj(
            {
                "dish": STR,
                "ingredients": {"type": "array", "items": STR, "minItems": 2, "maxItems": 4},
                "minutes": INT,
            }
        ),
    ),
    ("a point", _obj({"x": NUM, "y": NUM})),
    (
        "a date",
        _obj(
            {
                "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
                "month": {"type": "integer", "minimum": 1, "maximum": 12},
                "day": {"type": "integer", "minimum": 1, "maximum": 28},
            }
        ),
    ),
    (
        "a car",
        _obj({"make": STR, "model": STR, "electric": {"type": "boolean"}}, ["make", "model"]),
    ),
    ("a planet", _obj({"planet": STR, "moons": INT, "gas_giant": {"type": "boolean"}})),
    (
        "a weather report",
        _obj({"city": STR, "sky": {"enum": ["sunny", "cloudy", "rainy"]}, "wind_kmh": INT}),
    ),
    (
        "a user profile",
        _obj(
            {
                "user": _obj({"id": INT, "handle": STR}),
                "tags": {
                    "type": "array",
                    "items": {"enum": ["admin", "dev", "ops"]},
                    "maxItems": 3,
                },
            }
        ),
    ),
    ("an email", _obj({"to": STR, "subject": STR, "urgent": {"type": "boolean"}})),
    ("a score", _obj({"home": INT, "away": INT})),
    (
        "a song",
        _obj(
            {
                "title": STR,
                "artist": STR,
                "seconds": {"type": "integer", "minimum": 30, "maximum": 600},
            }
        ),
    ),
    (
        "a shopping list",
        _obj(
            {
                "items": {
                    "type": "array",
                    "items": _obj(
                        {"item": STR, "qty": {"type": "integer", "minimum": 1, "maximum": 9}}
                    ),
                    "minItems": 1,
                    "maxItems": 3,
                }
            }
        ),
    ),
    (
        "a country",
        _obj(
            {
                "name": STR,
                "capital": STR,
                "continent": {"enum": ["Europe", "Asia", "Africa", "Americas", "Oceania"]},
            }
        ),
    ),
    ("a greeting", _obj({"language": STR, "greeting": STR})),
    (
        "a task",
        _obj(
            {
                "task": STR,
                "priority": {"enum": ["low", "medium", "high"]},
                "done": {"type": "boolean"},
            }
        ),
    ),
    (
        "a coordinate pair",
        _obj(
            {
                "lat": {"type": "number", "minimum": -90, "maximum": 90},
                "lon": {"type": "number", "minimum": -180, "maximum": 180},
            }
        ),
    ),
    (
        "an animal fact",
        _obj(
            {
                "animal": STR,
                "fact": {"type": "string", "maxLength": 60},
                "legs": {"type": "integer", "minimum": 0, "maximum": 8},
            }
        ),
    ),
    (
        "a nested config",
        _obj(
            {
                "server": _obj(
                    {"host": STR, "port": {"type": "integer", "minimum": 1, "maximum": 65535}}
                ),
                "debug": {"type": "boolean"},
            }
        ),
    ),
]

TOOLS = (
    Tool(
        "get_weather",
        "Current weather for a city.",
        _obj({"city": STR, "unit": {"enum": ["celsius", "fahrenheit"]}}),
    ),
    Tool(
        "search_web",
        "Search the web.",
        _obj({"query": STR, "results": {"type": "integer", "minimum": 1, "maximum": 10}}),
    ),
)
CALL = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.DOTALL)


def ask(text: str, **fields: Any) -> GenerationRequest:
    return GenerationRequest(
        model="smollm2",
        messages=(ChatMessage("user", text),),
        temperature=0.0,
        max_tokens=400,
        **fields,
    )


async def test_thirty_schemas_give_thirty_valid_outputs(smollm2_dir: Path) -> None:
    assert len({json.dumps(s) for _, s in SCHEMAS}) == 30
    async with running(smollm2_dir) as backend:
        for subject, schema in SCHEMAS:
            result = await collect(
                backend,
                ask(
                    f"Describe {subject} as JSON.",
                    constraint=OutputConstraint("json_schema", schema=schema),
                ),
            )
            assert result.finish.reason == "stop", (subject, result.text)
            jsonschema.validate(json.loads(result.text), schema)


async def test_required_tool_choice_gives_a_schema_valid_call_every_time(smollm2_dir: Path) -> None:
    questions = [
        "What is the weather in Paris?",
        "Find me recipes for pancakes.",
        "Is it raining in Oslo?",
        "Who won the 2018 World Cup?",
    ]
    schemas = {tool.name: tool.parameters for tool in TOOLS}
    async with running(smollm2_dir) as backend:
        for question in questions:
            for choice in (ToolChoice("required"), ToolChoice("required", ("search_web",))):
                result = await collect(
                    backend,
                    ask(question, tools=TOOLS, tool_choice=choice, parallel_tool_calls=False),
                )
                assert result.finish.reason == "stop", result.text
                (body,) = CALL.findall(result.text)
                assert CALL.sub("", result.text) == ""
                call = json.loads(body)
                assert call["name"] in (choice.names or schemas)
                jsonschema.validate(call["arguments"], schemas[call["name"]])


async def test_a_constrained_stream_is_the_same_alone_and_in_a_batch_of_eight(
    smollm2_dir: Path,
) -> None:
    schema = SCHEMAS[12][1]
    constrained = ask(
        "Describe a team as JSON.", constraint=OutputConstraint("json_schema", schema=schema)
    )
    # Whole-prompt prefills: a time-budgeted chunk depends on the machine's load, and int8
    # rounds a prompt prefilled in other chunks beside decoding rows differently (see
    # docs/reliability.md), which would make this comparison flaky on a busy machine.
    async with running(smollm2_dir, max_batch=8, prefill_budget_ms=None) as backend:
        alone = await collect(backend, constrained)
        results: dict[int, str] = {}

        async def one(index: int, request: GenerationRequest) -> None:
            results[index] = (await collect(backend, request)).text

        async with anyio.create_task_group() as group:
            group.start_soon(one, 0, constrained)
            for index in range(1, 8):
                other = SCHEMAS[index][1] if index % 2 else None
                constraint = OutputConstraint("json_schema", schema=other) if other else None
                group.start_soon(
                    one, index, ask(f"Tell me a story number {index}.", constraint=constraint)
                )
    assert results[0] == alone.text
    jsonschema.validate(json.loads(alone.text), schema)


async def test_strict_tool_under_auto_gives_text_or_a_schema_valid_call(smollm2_dir: Path) -> None:
    questions = [
        "What is the weather in Paris?",
        "Is it raining in Oslo right now?",
        "How warm is it in Tokyo, in fahrenheit?",
        "Should I take an umbrella in London today?",
        "Tell me a joke about the weather.",
    ]
    weather = dataclasses.replace(TOOLS[0], strict=True)
    called = 0
    async with running(smollm2_dir) as backend:
        for question in questions:
            for seed in range(2):
                request = ask(question, tools=(weather,), parallel_tool_calls=False)
                sampled = dataclasses.replace(request, temperature=0.7, seed=seed, max_tokens=120)
                result = await collect(backend, sampled)
                text, mark, _ = result.text.partition("<tool_call>")
                if not mark:
                    continue  # a plain answer, or cut short inside one
                assert result.finish.reason == "stop", result.text
                (body,) = CALL.findall(result.text)
                assert result.text == f"{text}<tool_call>\n{body}\n</tool_call>"
                call = json.loads(body)
                assert call["name"] == "get_weather"
                jsonschema.validate(call["arguments"], weather.parameters)
                called += 1
    assert called  # SmolLM2 does call the tool for some of these
