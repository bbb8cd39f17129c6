"""LangChain's OpenAI and Anthropic chat models against a real tokenwire server: tools bound
and streamed, and structured output."""

from __future__ import annotations

import functools
import operator
from typing import Literal

from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"]) -> str:
    """The current weather in a city."""
    return f"18 degrees {unit} in {city}"


class Person(BaseModel):
    """Someone made up."""

    name: str
    age: int
    tags: list[str]


def openai_chat(url: str) -> ChatOpenAI:
    return ChatOpenAI(base_url=f"{url}/v1", api_key="unused", model="echo", max_retries=0)  # type: ignore[arg-type]


def anthropic_chat(url: str) -> ChatAnthropic:
    return ChatAnthropic(base_url=url, api_key="unused", model="echo", max_retries=0)  # type: ignore[arg-type,call-arg]


def streamed_tool_call(chunks: list[AIMessageChunk]) -> dict[str, object]:
    assert len(chunks) > 2, "the call should arrive in pieces"
    merged = functools.reduce(operator.add, chunks)
    [call] = merged.tool_calls
    return dict(call)


def test_langchain_openai_streams_a_bound_tool_call(echo_url: str) -> None:
    model = openai_chat(echo_url).bind_tools([get_weather], tool_choice="get_weather")
    chunks = list(model.stream("What is the weather in Paris?"))
    call = streamed_tool_call(chunks)  # type: ignore[arg-type]
    assert call["name"] == "get_weather"
    args = call["args"]
    assert isinstance(args, dict) and isinstance(args["city"], str)
    assert args["unit"] in ("celsius", "fahrenheit")
    # The tool's answer goes back as a tool message; the server takes the round trip.
    history = [
        HumanMessage("What is the weather in Paris?"),
        functools.reduce(operator.add, chunks),
        ToolMessage(get_weather.invoke(args), tool_call_id=str(call["id"])),
    ]
    answer = openai_chat(echo_url).invoke(history)
    assert isinstance(answer.content, str) and answer.content


def test_langchain_openai_structured_output(echo_url: str) -> None:
    person = openai_chat(echo_url).with_structured_output(Person).invoke("Invent a person.")
    assert isinstance(person, Person)


def test_langchain_anthropic_streams_a_bound_tool_call(echo_url: str) -> None:
    model = anthropic_chat(echo_url).bind_tools([get_weather], tool_choice="get_weather")
    chunks = list(model.stream("What is the weather in Paris?"))
    call = streamed_tool_call(chunks)  # type: ignore[arg-type]
    assert call["name"] == "get_weather"
    args = call["args"]
    assert isinstance(args, dict) and isinstance(args["city"], str)
