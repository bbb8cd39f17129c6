"""The fields of an OpenAI Responses request: `input` items, `instructions`, flat function
`tools`, `tool_choice`, `text.format`, `reasoning`, `include` and `metadata`.

Errors name the field as the API does (`input[2].content[0].type`, `tools[1].type`) and never
echo its value. What the API has but this server cannot do yet is refused, never ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenwire.dialects import _validate as v
from tokenwire.dialects._agent import AgentFields
from tokenwire.dialects._openai_tools import (
    MAX_TOP_LOGPROBS,
    function_tools,
    output_format,
    parallel_tool_calls,
    reasoning_effort,
    tool_choice,
)
from tokenwire.requests import ChatMessage, OutputConstraint, Tool, ToolCall, ToolChoice

# "developer" is the API's newer name for the system role.
_ROLES: Mapping[str, str] = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
}
_TEXT_PARTS = ("input_text", "output_text")
LOGPROBS_INCLUDE = "message.output_text.logprobs"
# `reasoning.encrypted_content` is accepted and yields nothing: this server's reasoning is
# plain text, never encrypted (see docs/dialects-and-transports.md).
INCLUDABLE = (LOGPROBS_INCLUDE, "reasoning.encrypted_content")
MAX_METADATA_PAIRS = 16  # the API's limits on `metadata`
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


@dataclass(frozen=True, slots=True)
class ResponsesInput:
    """The conversation and agent fields of one Responses request, validated."""

    messages: tuple[ChatMessage, ...]
    agent: AgentFields


def parse_input(body: Mapping[str, Any]) -> ResponsesInput:
    messages: list[ChatMessage] = []
    instructions = v.optional_str(body, "instructions")
    if instructions is not None:
        messages.append(ChatMessage("system", instructions))
    messages.extend(_items(v.require(body, "input")))
    # The Responses API makes function tools strict unless told otherwise.
    tools = function_tools(body.get("tools"), nested=False, strict=True)
    include = parse_include(body.get("include"))
    top = v.optional_int(body, "top_logprobs", minimum=0, maximum=MAX_TOP_LOGPROBS)
    agent = AgentFields(
        tools=tools,
        tool_choice=parse_tool_choice(body.get("tool_choice"), tools),
        parallel_tool_calls=parallel_tool_calls(body),
        constraint=parse_text_format(body.get("text")),
        # The API returns logprobs when `include` asks; a `top_logprobs` count asks as well.
        logprobs=LOGPROBS_INCLUDE in include or bool(top),
        top_logprobs=top or 0,
        reasoning=parse_reasoning(body.get("reasoning")),
    )
    return ResponsesInput(tuple(messages), agent)


def _items(value: Any) -> list[ChatMessage]:
    if isinstance(value, str):
        return [ChatMessage("user", value)]
    messages: list[ChatMessage] = []
    for field, item in v.objects(value, "input", non_empty=True):
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, field))
        elif kind == "function_call":
            call = ToolCall(
                id=_string(item, "call_id", field),
                name=_string(item, "name", field),
                arguments=_string(item, "arguments", field),
            )
            last = messages[-1] if messages else None
            # A turn's message and its calls (or consecutive calls) are one assistant turn.
            if last is not None and last.role == "assistant":
                messages[-1] = ChatMessage("assistant", last.content, (*last.tool_calls, call))
            else:
                messages.append(ChatMessage("assistant", "", (call,)))
        elif kind == "function_call_output":
            call_id = _string(item, "call_id", field)
            output = _content(v.require(item, "output", f"{field}."), f"{field}.output")
            names = {call.id: call.name for turn in messages for call in turn.tool_calls}
            messages.append(
                ChatMessage("tool", output, tool_call_id=call_id, name=names.get(call_id))
            )
        elif kind == "reasoning":
            # Earlier reasoning is not part of the prompt: chat templates drop past turns'
            # thinking too. Accepted so a client can send back the output it was given.
            continue
        else:
            raise v.invalid(
                f"{field}.type",
                "expected message, function_call, function_call_output or reasoning",
            )
    if not messages:
        raise v.invalid("input", "expected at least one message or function call item")
    return messages


def _message(item: Mapping[str, Any], field: str) -> ChatMessage:
    role = v.as_str(v.require(item, "role", f"{field}."), f"{field}.role")
    mapped = _ROLES.get(role)
    if mapped is None:
        raise v.invalid(f"{field}.role", "expected one of user, assistant, system, developer")
    return ChatMessage(
        mapped, _content(v.require(item, "content", f"{field}."), f"{field}.content")
    )


def _content(value: Any, field: str) -> str:
    """A string, or an array of `input_text` / `output_text` parts joined together (no
    input_image, input_file, input_audio: this server serves a text model)."""
    return v.joined_text(value, field, kinds=_TEXT_PARTS)


def _string(item: Mapping[str, Any], key: str, field: str) -> str:
    return v.as_str(v.require(item, key, f"{field}."), f"{field}.{key}")


def parse_tool_choice(value: Any, tools: tuple[Tool, ...]) -> ToolChoice:
    return ToolChoice() if value is None else tool_choice(value, tools, nested=False)


def parse_text_format(value: Any) -> OutputConstraint | None:
    """`text.format`: text, json_object, or `{"type": "json_schema", "name", "schema"}`."""
    if value is None:
        return None
    fmt = v.as_object(value, "text").get("format")
    if fmt is None:
        return None
    return output_format(v.as_object(fmt, "text.format"), "text.format", nested=False)


def parse_reasoning(value: Any) -> bool | None:
    """`reasoning.effort`: none and minimal turn thinking off, low and up turn it on."""
    if value is None:
        return None
    reasoning = v.as_object(value, "reasoning")
    v.optional_str(reasoning, "summary", "reasoning.")
    effort = v.optional_str(reasoning, "effort", "reasoning.")
    return None if effort is None else reasoning_effort(effort, "reasoning.effort")


def parse_include(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = v.as_list(value, "include")
    for index, item in enumerate(items):
        if item not in INCLUDABLE:
            raise v.invalid(f"include[{index}]", f"expected one of {', '.join(INCLUDABLE)}")
    return tuple(items)


def parse_metadata(value: Any) -> dict[str, str] | None:
    """Up to 16 string pairs (keys up to 64 characters, values up to 512), echoed back."""
    if value is None:
        return None
    metadata = v.as_object(value, "metadata")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise v.invalid("metadata", f"expected at most {MAX_METADATA_PAIRS} pairs")
    for key, item in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            raise v.invalid("metadata", f"expected keys of at most {MAX_METADATA_KEY} characters")
        if not isinstance(item, str) or len(item) > MAX_METADATA_VALUE:
            raise v.invalid(
                "metadata", f"expected string values of at most {MAX_METADATA_VALUE} characters"
            )
    return dict(metadata)
