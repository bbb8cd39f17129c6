"""Tools in the prompt for templates without tool support: Hermes markup, one system turn."""

from __future__ import annotations

import json

from tests.backends.onnx.tiny_models import CHAT_TEMPLATE
from tokenwire.backends.onnx.chat_template import ChatTemplate
from tokenwire.backends.onnx.tool_prompt import describe_tools, render_tool_turns
from tokenwire.requests import ChatMessage, Tool, ToolCall

WEATHER = Tool(
    "get_weather", "The weather.", {"type": "object", "properties": {"city": {"type": "string"}}}
)


def test_tools_are_described_after_an_existing_system_message() -> None:
    turns = render_tool_turns(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "hi")], [WEATHER]
    )
    assert [t.role for t in turns] == ["system", "user"]
    assert turns[0].content.startswith("Be brief.\n\nYou are a function calling AI model.")
    signature = turns[0].content.split("<tools>\n")[1].split("\n</tools>")[0]
    assert json.loads(signature)["function"]["name"] == "get_weather"
    assert (
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        in turns[0].content
    )


def test_a_system_turn_is_added_when_there_is_none_and_not_without_tools() -> None:
    assert render_tool_turns([ChatMessage("user", "hi")], [WEATHER])[0].content == describe_tools(
        [WEATHER]
    )
    assert render_tool_turns([ChatMessage("user", "hi")], []) == [ChatMessage("user", "hi")]


def test_calls_and_results_render_as_hermes_markup() -> None:
    messages = [
        ChatMessage("user", "Weather in Paris and Rome?"),
        ChatMessage(
            "assistant",
            "",
            tool_calls=(
                ToolCall("a", "get_weather", '{"city": "Paris"}'),
                ToolCall("b", "get_weather", '{"city":"Rome"}'),
            ),
        ),
        ChatMessage("tool", "18C", tool_call_id="a"),
        ChatMessage("tool", "24C", tool_call_id="b"),
    ]
    turns = render_tool_turns(messages, [])
    assert turns[1] == ChatMessage(
        "assistant",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',
    )
    assert [t.role for t in turns] == ["user", "assistant", "user"]
    assert (
        turns[2].content
        == "<tool_response>\n18C\n</tool_response>\n<tool_response>\n24C\n</tool_response>"
    )


def test_a_template_that_renders_tools_gets_them_itself() -> None:
    source = "{% for t in tools %}[{{ t.function.name }}]{% endfor %}" + CHAT_TEMPLATE
    template = ChatTemplate(source)
    assert template.uses_tools and not ChatTemplate(CHAT_TEMPLATE).uses_tools
    text = template.render([ChatMessage("user", "hi")], [WEATHER])
    assert text.startswith("[get_weather]<|im_start|>user\nhi")
