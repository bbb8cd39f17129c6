"""`strict` tools under `tool_choice` "auto": text, or calls whose arguments the mask checks.

The tiny model here has the opener `<tool_call>\\n` as one token whose logits copy those of
")", a token the random model writes often: unconstrained, it opens calls at random and
writes junk after them, so only the grammar makes these streams valid. (Not `<tool_call>`
alone: llguidance takes any added token of the form `<...>` for a special token, never
text.)
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import onnx
import pytest
from onnx import numpy_helper
from tokenizers import Tokenizer

from tests.backends.onnx._helpers import Result, collect, running
from tests.backends.onnx.test_constraints import CLOCK, WEATHER
from tests.backends.onnx.tiny_models import EOS_ID, TinyConfig, write_model_dir
from tokenwire.backends.onnx.constraints import ConstraintCompiler, text_or_tool_calls_lark
from tokenwire.requests import ChatMessage, GenerationRequest, Tool

pytestmark = pytest.mark.anyio

STRICT_WEATHER = dataclasses.replace(WEATHER, strict=True)
MARK = "<tool_call>"
OPENER = "<tool_call>\n"
BLOCK = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.DOTALL)


@pytest.fixture(scope="module")
def tool_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with room for the tools' description that often writes `<tool_call>`."""
    config = TinyConfig(max_context=1536, added_tokens=(OPENER,))
    directory = write_model_dir(tmp_path_factory.mktemp("tool-model"), "shared", config)
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    model = onnx.load(str(directory / "model.onnx"))
    (lm_head,) = [init for init in model.graph.initializer if init.name == "lm_head"]
    weights = numpy_helper.to_array(lm_head).copy()
    weights[:, tokenizer.token_to_id(OPENER)] = weights[:, tokenizer.token_to_id(")")]
    lm_head.CopyFrom(numpy_helper.from_array(weights, "lm_head"))
    onnx.save(model, str(directory / "model.onnx"))
    return directory


def ask(tools: tuple[Tool, ...], **fields: Any) -> GenerationRequest:
    fields.setdefault("temperature", 1.0)
    fields.setdefault("max_tokens", 200)
    return GenerationRequest(
        model="tiny",
        messages=(ChatMessage("user", "What is the weather in Paris?"),),
        tools=tools,
        **fields,
    )


def split_turn(result: Result) -> tuple[str, list[dict[str, Any]]]:
    """The text before the first call and the calls, each a whole valid block; a stream cut
    by `max_tokens` may end inside one, which must be a call's beginning and is dropped."""
    text, mark, rest = result.text.partition(MARK)
    assert MARK not in text
    if not mark:
        return text, []
    blocks = mark + rest
    if result.finish.reason == "length":
        closed = (
            blocks.rfind("</tool_call>") + len("</tool_call>") if "</tool_call>" in blocks else 0
        )
        blocks, tail = blocks[:closed], blocks[closed:].lstrip("\n")
        start = f'{OPENER}{{"name": "get_'
        assert tail.startswith(start) or start.startswith(tail), result.text
    else:
        assert result.finish.reason == "stop", result.finish
    assert BLOCK.sub("", blocks).strip("\n") == "", result.text  # blocks, newline-separated
    return text, [json.loads(body) for body in BLOCK.findall(blocks)]


def check_calls(calls: list[dict[str, Any]]) -> None:
    for call in calls:
        assert set(call) == {"name", "arguments"}
        if call["name"] == STRICT_WEATHER.name:
            jsonschema.validate(call["arguments"], STRICT_WEATHER.parameters)
        else:  # not strict: any JSON object
            assert call["name"] == CLOCK.name and isinstance(call["arguments"], dict)


async def test_strict_tool_under_auto_gets_text_or_schema_valid_calls(
    tool_model_dir: Path,
) -> None:
    opened = called = 0
    async with running(tool_model_dir) as backend:
        for seed in range(6):
            result = await collect(backend, ask((STRICT_WEATHER, CLOCK), seed=seed))
            _, calls = split_turn(result)
            check_calls(calls)
            opened += MARK in result.text
            called += len(calls)
    assert opened >= 3 and called >= 1  # the checks above were not vacuous


async def test_no_parallel_tool_calls_under_auto_allows_one_call_then_stops(
    tool_model_dir: Path,
) -> None:
    async with running(tool_model_dir) as backend:
        for seed in range(4):
            result = await collect(
                backend, ask((STRICT_WEATHER, CLOCK), seed=seed, parallel_tool_calls=False)
            )
            _, calls = split_turn(result)
            assert result.text.count(MARK) <= 1
            check_calls(calls)
            if calls:
                assert result.finish.reason == "stop"
                assert result.text.endswith("</tool_call>")


def test_auto_is_constrained_only_with_a_strict_tool(tool_model_dir: Path) -> None:
    compiler = ConstraintCompiler((tool_model_dir / "tokenizer.json").read_text(), EOS_ID)
    assert compiler.grammar(ask((WEATHER, CLOCK))) is None
    assert compiler.grammar(ask((STRICT_WEATHER, CLOCK))) is not None


GOOD = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}'


@pytest.mark.parametrize(
    ("text", "parallel", "valid"),
    [
        ("Sunny, probably.", True, True),
        ("", True, True),
        ("a <tool_call b <tool_cal", True, True),
        (f"<tool_call>\n{GOOD}\n</tool_call>", False, True),
        (f"Let me look.\n<tool_call>\n{GOOD}\n</tool_call>", False, True),
        (
            f'<tool_call>\n{GOOD}\n</tool_call>\n<tool_call>\n{{"name": "get_time", '
            '"arguments": {"any": [1]}}\n</tool_call>',
            True,
            True,
        ),
        (f"<tool_call>\n{GOOD}\n</tool_call>\n<tool_call>\n{GOOD}\n</tool_call>", False, False),
        (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": 3}}\n</tool_call>',
            True,
            False,
        ),
        ('<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>', True, False),
        ("I wrote <tool_call> in prose.", True, False),
        (f"<tool_call>\n{GOOD}\n</tool_call> and more text", True, False),
    ],
)
def test_auto_grammar_language(
    tool_model_dir: Path, text: str, parallel: bool, valid: bool
) -> None:
    compiler = ConstraintCompiler((tool_model_dir / "tokenizer.json").read_text(), EOS_ID)
    lark = text_or_tool_calls_lark((STRICT_WEATHER, CLOCK), parallel=parallel)
    matcher = compiler.matcher(json.dumps({"grammars": [{"lark_grammar": lark}]}), "tools").matcher
    tokens = [*compiler.tokenizer.tokenize_str(text), EOS_ID]
    assert (matcher.validate_tokens(tokens) == len(tokens)) is valid


def test_auto_grammar_forbids_the_mark_in_prose_as_soon_as_it_is_not_a_call(
    tool_model_dir: Path,
) -> None:
    compiler = ConstraintCompiler((tool_model_dir / "tokenizer.json").read_text(), EOS_ID)
    lark = text_or_tool_calls_lark((STRICT_WEATHER,), parallel=True)
    matcher = compiler.matcher(json.dumps({"grammars": [{"lark_grammar": lark}]}), "tools").matcher
    prose = compiler.tokenizer.tokenize_str("Wrap calls in <tool_call> XML tags")
    accepted = matcher.validate_tokens(prose)
    assert compiler.tokenizer.decode_str(prose[:accepted]).endswith("<tool_call>")
