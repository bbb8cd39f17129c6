"""The agent fields of an OpenAI chat request: tools, tool_choice, response_format, logprobs,
reasoning, and the assistant tool calls and tool results among its messages. The Responses
API (`_responses_input`) has the same fields, some in other places (flat function tools,
`text.format`); both read them here.

Errors name the field as OpenAI does (`tools[0].function.name`) and never echo its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tokenwire.dialects import _validate as v
from tokenwire.dialects._agent import AgentFields
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


def parse_agent_options(body: Mapping[str, Any]) -> AgentFields:
    tools = function_tools(body.get("tools"), nested=True, strict=False)
    logprobs, top = parse_logprobs(body)
    return AgentFields(
        tools=tools,
        tool_choice=parse_tool_choice(body.get("tool_choice"), tools),
        parallel_tool_calls=parallel_tool_calls(body),
        constraint=parse_response_format(body.get("response_format")),
        logprobs=logprobs,
        top_logprobs=top,
        reasoning=parse_reasoning(body),
    )


def function_name(value: Any, field: str) -> str:
    return v.matching(value, field, _NAME, _NAME_RULE)


def function_tools(value: Any, *, nested: bool, strict: bool) -> tuple[Tool, ...]:
    """Function tools: `{"type": "function", "function": {"name", "description",
    "parameters", "strict"}}` (Chat Completions, `nested`), or the same fields beside
    `type` (Responses). `strict` is what an absent `strict` means."""
    if value is None:
        return ()
    tools: list[Tool] = []
    for field, tool in v.objects(value, "tools"):
        if v.require(tool, "type", f"{field}.") != "function":
            # Responses' hosted tools (web_search, file_search, mcp, ...) end here too.
            raise v.invalid(f"{field}.type", "only 'function' tools are supported")
        spec, prefix = tool, f"{field}."
        if nested:
            spec = v.as_object(v.require(tool, "function", prefix), f"{field}.function")
            prefix = f"{field}.function."
        parameters = spec.get("parameters")
        told = v.optional_bool(spec, "strict", prefix)
        tools.append(
            Tool(
                name=function_name(v.require(spec, "name", prefix), prefix + "name"),
                description=v.optional_str(spec, "description", prefix) or "",
                strict=strict if told is None else told,
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
    return tool_choice(value, tools, nested=True)


def tool_choice(value: Any, tools: tuple[Tool, ...], *, nested: bool) -> ToolChoice:
    """none, auto, required, or one function of `tools` to call: `{"type": "function",
    "function": {"name"}}` (Chat Completions, `nested`) or `{"type": "function", "name"}`."""
    if isinstance(value, str):
        if value not in _TOOL_CHOICE_MODES:
            raise v.invalid("tool_choice", "expected none, auto, required or a function object")
        return ToolChoice(value)  # type: ignore[arg-type]  # checked just above
    choice = v.as_object(value, "tool_choice")
    if v.require(choice, "type", "tool_choice.") != "function":
        raise v.invalid("tool_choice.type", "only 'function' is supported")
    field = "tool_choice"
    if nested:
        field = "tool_choice.function"
        choice = v.as_object(v.require(choice, "function", "tool_choice."), field)
    name = v.as_str(v.require(choice, "name", f"{field}."), f"{field}.name")
    if name not in {tool.name for tool in tools}:
        raise v.invalid(f"{field}.name", "expected the name of a tool in 'tools'")
    return ToolChoice("required", (name,))


def parallel_tool_calls(body: Mapping[str, Any]) -> bool:
    parallel = v.optional_bool(body, "parallel_tool_calls")
    return True if parallel is None else parallel


def parse_response_format(value: Any) -> OutputConstraint | None:
    if value is None:
        return None
    return output_format(v.as_object(value, "response_format"), "response_format", nested=True)


def output_format(fmt: Mapping[str, Any], field: str, *, nested: bool) -> OutputConstraint | None:
    """An output format at `field`: text (no constraint), json_object, or json_schema, whose
    `name`, `schema`, `strict` and `description` stand in `fmt["json_schema"]` (Chat
    Completions' `response_format`, `nested`; no schema there means any object) or in `fmt`
    itself (Responses' `text.format`; the schema is required)."""
    kind = v.require(fmt, "type", f"{field}.")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputConstraint("json_object")
    if kind != "json_schema":
        raise v.invalid(f"{field}.type", "expected text, json_object or json_schema")
    spec, prefix = fmt, f"{field}."
    if nested:
        spec = v.as_object(v.require(fmt, "json_schema", prefix), f"{field}.json_schema")
        prefix = f"{field}.json_schema."
    name = function_name(v.require(spec, "name", prefix), prefix + "name")
    v.optional_bool(spec, "strict", prefix)
    v.optional_str(spec, "description", prefix)
    raw = spec.get("schema") if nested else v.require(spec, "schema", prefix)
    schema = None if raw is None else v.as_object(raw, prefix + "schema")
    # No schema (or an empty one) in a response_format: any JSON object, as the API reads it.
    if nested and not schema:
        schema = {"type": "object"}
    return OutputConstraint("json_schema", schema=schema, name=name)


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
        return reasoning_effort(effort, "reasoning_effort")
    kwargs = body.get("chat_template_kwargs")
    if kwargs is None:
        return None
    kwargs = v.as_object(kwargs, "chat_template_kwargs")
    flags = [v.optional_bool(kwargs, key, "chat_template_kwargs.") for key in _THINKING_KEYS]
    return next((flag for flag in flags if flag is not None), None)


def reasoning_effort(effort: str, field: str) -> bool:
    """none and minimal turn thinking off; low, medium and high turn it on."""
    if effort not in REASONING_EFFORTS:
        raise v.invalid(field, "expected none, minimal, low, medium or high")
    return REASONING_EFFORTS[effort]


def parse_tool_calls(value: Any, field: str) -> tuple[ToolCall, ...]:
    """An assistant turn's `tool_calls`: `[{"id", "type": "function", "function": {...}}]`."""
    calls: list[ToolCall] = []
    for path, call in v.objects(value, field):
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
