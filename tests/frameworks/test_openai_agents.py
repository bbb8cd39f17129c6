"""The OpenAI Agents SDK against a real tokenwire server, over the Responses API: a streamed
run whose agent calls a function tool, runs it, and gives its final output."""

from __future__ import annotations

import anyio
from agents import (
    Agent,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.model_settings import ModelSettings
from openai import AsyncOpenAI

calls: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    calls.append(city)
    return f"Sunny in {city}"


async def run_agent(url: str) -> tuple[str, list[str]]:
    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    agent = Agent(
        name="weather",
        instructions="Answer with the weather.",
        model=OpenAIResponsesModel(model="echo", openai_client=client),
        tools=[get_weather],
        model_settings=ModelSettings(tool_choice="auto"),
        # The echo backend calls every tool the last user message names, on every turn: the
        # tool's result is the run's final output rather than another turn's input.
        tool_use_behavior="stop_on_first_tool",
    )
    async with client:
        result = Runner.run_streamed(agent, "What is the weather in Paris? Use get_weather.")
        kinds = [event.type async for event in result.stream_events()]
    return str(result.final_output), kinds


def test_agents_sdk_runs_the_tool_and_gets_the_final_output(echo_url: str) -> None:
    calls.clear()
    final, kinds = anyio.run(run_agent, echo_url)
    [city] = calls  # the model's call reached the tool, with its arguments parsed
    assert isinstance(city, str) and city
    assert final == f"Sunny in {city}"
    # Streamed: the Responses events came through, then the run's items.
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
