"""Tools in the prompt, Hermes style, for chat templates that know nothing of tools.

The tools are described in the system turn (merged after an existing system message);
earlier calls render as `<tool_call>` blocks in the assistant's turn, and results as
`<tool_response>` blocks in a user turn, as the Hermes and Qwen templates write them.
The exact text is documented in docs/onnx-backend.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tokenwire.backends.onnx.constraints import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from tokenwire.requests import ChatMessage, Tool, ToolCall

TOOLS_PREAMBLE = (
    "You are a function calling AI model. You are provided with function signatures within "
    "<tools></tools> XML tags. You may call one or more functions to assist with the user "
    "query. Don't make assumptions about what values to plug into functions. Here are the "
    "available tools: <tools>\n{tools}\n</tools>\n"
    "For each function call return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def describe_tools(tools: Sequence[Tool]) -> str:
    """The system-turn text that offers `tools`: one JSON signature a line."""
    signatures = "\n".join(
        json.dumps(
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                },
            },
            ensure_ascii=False,
            default=_mapping,
        )
        for tool in tools
    )
    return TOOLS_PREAMBLE.format(tools=signatures)


def render_tool_turns(messages: Sequence[ChatMessage], tools: Sequence[Tool]) -> list[ChatMessage]:
    """`messages` as plain system/user/assistant turns: the tools described in the system
    turn (when there are any to offer), calls and results as Hermes markup."""
    turns: list[ChatMessage] = []
    for message in messages:
        if message.role == "tool":
            block = f"<tool_response>\n{message.content}\n</tool_response>"
            previous = turns[-1] if turns else None
            if previous is not None and previous.role == "user" and previous.name == "tool":
                # Consecutive results share one user turn, as in Qwen's template.
                turns[-1] = ChatMessage("user", f"{previous.content}\n{block}", name="tool")
            else:
                turns.append(ChatMessage("user", block, name="tool"))
        elif message.role == "assistant" and message.tool_calls:
            calls = "\n".join(_call_markup(call) for call in message.tool_calls)
            content = f"{message.content}\n{calls}" if message.content else calls
            turns.append(ChatMessage("assistant", content))
        else:
            turns.append(ChatMessage(message.role, message.content))
    if tools:
        offer = describe_tools(tools)
        if turns and turns[0].role == "system":
            turns[0] = ChatMessage("system", f"{turns[0].content}\n\n{offer}")
        else:
            turns.insert(0, ChatMessage("system", offer))
    return turns


def _call_markup(call: ToolCall) -> str:
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        arguments = call.arguments  # kept as the client sent it: the model sees a string
    body = json.dumps({"name": call.name, "arguments": arguments}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


def _mapping(value: object) -> object:
    """Requests hold read-only mappings (`MappingProxyType`); JSON wants dicts."""
    return dict(value)  # type: ignore[call-overload]
