"""Grammar fast-forward on the real SmolLM2 int8: tokens a grammar forces are fed without
sampling, in one run, and the stream is the same as without (greedy), only in fewer steps.

int8 rounds a run of several positions differently from one-token steps, so at a near-tie
the texts can part (of the schemas in `test_constraints_smollm2`, "an address" does, after
its last key: docs/onnx-backend.md). The requests here are ones without such a tie; the
tiny fp32 model's test (`test_speculation`) checks token-for-token equality everywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.backends.onnx._helpers import Result, collect, running
from tests.backends.onnx.test_constraints_smollm2 import SCHEMAS, TOOLS, ask
from tokenwire.requests import GenerationRequest, OutputConstraint, ToolChoice

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REQUESTS = [
    ask(f"Describe {subject} as JSON.", constraint=OutputConstraint("json_schema", schema=schema))
    for subject, schema in (SCHEMAS[0], SCHEMAS[12])
] + [
    ask(
        "What is the weather in Paris?",
        tools=TOOLS,
        tool_choice=ToolChoice("required"),
        parallel_tool_calls=False,
    ),
]


async def _run(
    model: Path, requests: list[GenerationRequest], **options: Any
) -> tuple[list[Result], int, int]:
    async with running(model, **options) as backend:
        results = [await collect(backend, r) for r in requests]
        assert backend._loop is not None
        speculator, steps = backend._loop.speculator, backend._loop.steps
    return results, (speculator.forced if speculator is not None else 0), steps


@pytest.mark.parametrize("speculation", [False, True])
async def test_forced_tokens_stream_the_same_text_in_fewer_steps(
    smollm2_dir: Path, speculation: bool
) -> None:
    plain, forced_plain, steps_plain = await _run(
        smollm2_dir, REQUESTS, fast_forward=False, speculation=speculation
    )
    fast, forced, steps = await _run(
        smollm2_dir, REQUESTS, fast_forward=True, speculation=speculation
    )
    assert forced_plain == 0 and forced > 0
    assert steps < steps_plain
    for before, after in zip(plain, fast, strict=True):
        assert after.text == before.text
        assert after.ids == before.ids  # llguidance forces the tokens the model would pick
        assert after.finish == before.finish  # reason and usage
        assert after.finish.usage.completion_tokens == len(after.ids)
    json.loads(fast[0].text)  # valid under its schema, as without


async def test_a_forced_run_arrives_as_one_delta_of_several_tokens(smollm2_dir: Path) -> None:
    results, forced, _ = await _run(smollm2_dir, REQUESTS[:1], fast_forward=True)
    assert forced > 0
    assert max(len(d.token_ids) for d in results[0].deltas) > 1
