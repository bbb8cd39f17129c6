"""The agent fields of an OpenAI chat request: tools, tool_choice, response_format, logprobs,
reasoning, and the assistant tool calls and tool results among its messages.

Errors name the field as OpenAI does (`tools[0].function.name`) and never echo its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenwire.dialects import _validate as v
from tokenwire.requests import ChatMessage, OutputConstraint, Tool, ToolCall, ToolChoice

MAX_TOP_LOGPROBS = 20
# OpenAI's rule for function and schema names.
NAME_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"
_NAME = re.compile(NAME_PATTERN)
_NAME_RULE = "expected 1 to 64 letters, digits, underscores or dashes"
_TOOL_CHOICE_MODES = ("none", "auto", "required")
_THINKING_KEYS = ("enable_thinking", "thinking")  # Qwen3's, and Granite's / DeepSeek's
# Reasoning effort → `GenerationRequest.reasoning`: a model thinks or it does not, so the
# levels that ask for (almost) no thinking turn it off and the others turn it on.
REASONING_EFFORTS: Mapping[str, bool] = {
    "none": False,
    "minimal": False,
    "low": True,
    "medium": True,
    "high": True,
}


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """The agent fields of one chat request, validated."""

    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = ToolChoice()
    parallel_tool_calls: bool = True
    constraint: OutputConstraint | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    reasoning: bool | None = None


def parse_agent_options(body: Mapping[str, Any]) -> AgentOptions:
    tools = parse_tools(body.get("tools"))
    logprobs, top = parse_logprobs(body)
    parallel = v.optional_bool(body, "parallel_tool_calls")
    return AgentOptions(
        tools=tools,
        tool_choice=parse_tool_choice(body.get("tool_choice"), tools),
        parallel_tool_calls=True if parallel is None else parallel,
        constraint=parse_response_format(body.get("response_format")),
        logprobs=logprobs,
        top_logprobs=top,
        reasoning=parse_reasoning(body),
    )


def _name(value: Any, field: str) -> str:
    name = v.as_str(value, field)
    if not _NAME.match(name):
        raise v.invalid(field, _NAME_RULE)
    return name


def parse_tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    tools: list[Tool] = []
    for index, item in enumerate(v.as_list(value, "tools")):
        field = f"tools[{index}]"
        tool = v.as_object(item, field)
        if v.require(tool, "type", f"{field}.") != "function":
            raise v.invalid(f"{field}.type", "only 'function' is supported")
        function = v.as_object(v.require(tool, "function", f"{field}."), f"{field}.function")
        prefix = f"{field}.function."
        parameters = function.get("parameters")
        tools.append(
            Tool(
                name=_name(v.require(function, "name", prefix), prefix + "name"),
                description=v.optional_str(function, "description", prefix) or "",
                strict=bool(v.optional_bool(function, "strict", prefix)),
                **(
                    {}
                    if parameters is None
                    else {"parameters": v.as_object(parameters, prefix + "parameters")}
                ),
            )
        )
    return tuple(tools)


def parse_tool_choice(value: Any, tools: tuple[Tool, ...]) -> ToolChoice:
    if value is None:
        return ToolChoice()
    if not tools:
        # As OpenAI: a choice among no tools is refused, whatever the choice.
        raise v.invalid("tool_choice", "'tool_choice' is only allowed when 'tools' are specified")
    if isinstance(value, str):
        if value not in _TOOL_CHOICE_MODES:
            raise v.invalid("tool_choice", "expected none, auto, required or a function object")
        return ToolChoice(value)  # type: ignore[arg-type]  # checked just above
    choice = v.as_object(value, "tool_choice")
    if v.require(choice, "type", "tool_choice.") != "function":
        raise v.invalid("tool_choice.type", "only 'function' is supported")
    function = v.as_object(v.require(choice, "function", "tool_choice."), "tool_choice.function")
    name = v.as_str(
        v.require(function, "name", "tool_choice.function."), "tool_choice.function.name"
    )
    if name not in {tool.name for tool in tools}:
        raise v.invalid("tool_choice.function.name", "expected the name of a tool in 'tools'")
    return ToolChoice("required", (name,))


def parse_response_format(value: Any) -> OutputConstraint | None:
    if value is None:
        return None
    response_format = v.as_object(value, "response_format")
    kind = v.require(response_format, "type", "response_format.")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputConstraint("json_object")
    if kind != "json_schema":
        raise v.invalid("response_format.type", "expected text, json_object or json_schema")
    spec = v.as_object(
        v.require(response_format, "json_schema", "response_format."), "response_format.json_schema"
    )
    prefix = "response_format.json_schema."
    name = _name(v.require(spec, "name", prefix), prefix + "name")
    v.optional_bool(spec, "strict", prefix)
    v.optional_str(spec, "description", prefix)
    schema = spec.get("schema")
    if schema is not None:
        schema = v.as_object(schema, prefix + "schema")
    # No schema: any JSON object, as the API reads it.
    return OutputConstraint("json_schema", schema=schema or {"type": "object"}, name=name)


def parse_logprobs(body: Mapping[str, Any]) -> tuple[bool, int]:
    logprobs = bool(v.optional_bool(body, "logprobs"))
    top = v.optional_int(body, "top_logprobs", minimum=0, maximum=MAX_TOP_LOGPROBS)
    if top is not None and not logprobs:
        raise v.invalid("top_logprobs", "'logprobs' must be true when 'top_logprobs' is set")
    return logprobs, top or 0


def parse_reasoning(body: Mapping[str, Any]) -> bool | None:
    """`reasoning_effort`, else vLLM's `chat_template_kwargs.enable_thinking` (or `thinking`)."""
    effort = v.optional_str(body, "reasoning_effort")
    if effort is not None:
        if effort not in REASONING_EFFORTS:
            raise v.invalid("reasoning_effort", "expected none, minimal, low, medium or high")
        return REASONING_EFFORTS[effort]
    kwargs = body.get("chat_template_kwargs")
    if kwargs is None:
        return None
    kwargs = v.as_object(kwargs, "chat_template_kwargs")
    flags = [v.optional_bool(kwargs, key, "chat_template_kwargs.") for key in _THINKING_KEYS]
    return next((flag for flag in flags if flag is not None), None)


def parse_tool_calls(value: Any, field: str) -> tuple[ToolCall, ...]:
    """An assistant turn's `tool_calls`: `[{"id", "type": "function", "function": {...}}]`."""
    calls: list[ToolCall] = []
    for index, item in enumerate(v.as_list(value, field)):
        path = f"{field}[{index}]"
        call = v.as_object(item, path)
        if v.require(call, "type", f"{path}.") != "function":
            raise v.invalid(f"{path}.type", "only 'function' is supported")
        function = v.as_object(v.require(call, "function", f"{path}."), f"{path}.function")
        calls.append(
            ToolCall(
                id=v.as_str(v.require(call, "id", f"{path}."), f"{path}.id"),
                name=v.as_str(
                    v.require(function, "name", f"{path}.function."), f"{path}.function.name"
                ),
                arguments=v.as_str(
                    v.require(function, "arguments", f"{path}.function."),
                    f"{path}.function.arguments",
                ),
            )
        )
    return tuple(calls)


def tool_message(
    message: Mapping[str, Any], field: str, content: str, earlier: tuple[ChatMessage, ...]
) -> ChatMessage:
    """A `tool` turn: the result of the call `tool_call_id`, named after that earlier call."""
    call_id = v.as_str(v.require(message, "tool_call_id", f"{field}."), f"{field}.tool_call_id")
    names = {call.id: call.name for turn in earlier for call in turn.tool_calls}
    return ChatMessage("tool", content, tool_call_id=call_id, name=names.get(call_id))
