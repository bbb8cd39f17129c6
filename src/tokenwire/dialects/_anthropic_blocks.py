"""Anthropic Messages request fields for agents: content blocks, tools, tool_choice,
thinking and structured output (`output_config.format`), read into tokenwire's request types.

Only custom tools are served; server tools (`web_search_…`, `bash_…`, …) and image or
document blocks are refused with a 400 naming the field, as this server generates text only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tokenwire.dialects import _validate as v
from tokenwire.dialects._agent import AgentFields
from tokenwire.errors import InvalidRequestError
from tokenwire.requests import ChatMessage, OutputConstraint, Tool, ToolCall, ToolChoice

TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,128}$"
MIN_THINKING_BUDGET = 1024
"""The API's smallest `thinking.budget_tokens`."""

_TOOL_NAME = re.compile(TOOL_NAME_PATTERN)
_TOOL_CHOICES = ("auto", "any", "tool", "none")
_THINKING = {"enabled": True, "adaptive": True, "disabled": False}
ERROR_PREFIX = "Error: "
"""Put before a `tool_result` marked `is_error`: `ChatMessage` has no flag for it."""


def parse_agent_fields(body: Mapping[str, Any]) -> AgentFields:
    """Read `tools`, `tool_choice`, `thinking` and `output_config` (or the beta `output_format`)."""
    tools = _parse_tools(body.get("tools"))
    choice, parallel = _parse_tool_choice(body.get("tool_choice"), {t.name for t in tools})
    return AgentFields(
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        reasoning=_parse_thinking(body.get("thinking")),
        constraint=_parse_output(body),
    )


def _parse_tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    # Names are not checked for uniqueness, unlike the API's: a schema cannot state it.
    tools: list[Tool] = []
    for field, tool in v.objects(value, "tools"):
        kind = tool.get("type")
        if kind is not None and kind != "custom":
            raise v.invalid(
                f"{field}.type",
                "only custom tools (name, description, input_schema) are supported; "
                "server tools are not",
            )
        name = v.matching(
            v.require(tool, "name", f"{field}."),
            f"{field}.name",
            _TOOL_NAME,
            f"expected a name matching {TOOL_NAME_PATTERN}",
        )
        schema = v.as_object(v.require(tool, "input_schema", f"{field}."), f"{field}.input_schema")
        if schema.get("type") != "object":
            raise v.invalid(f"{field}.input_schema.type", 'expected "object"')
        tools.append(
            Tool(
                name=name,
                description=v.optional_str(tool, "description", f"{field}.") or "",
                parameters=schema,
                strict=bool(v.optional_bool(tool, "strict", f"{field}.")),
            )
        )
    return tuple(tools)


def _parse_tool_choice(value: Any, names: set[str]) -> tuple[ToolChoice, bool]:
    if value is None:
        return ToolChoice(), True
    choice = v.as_object(value, "tool_choice")
    kind = choice.get("type")
    if kind not in _TOOL_CHOICES:
        raise v.invalid("tool_choice.type", "expected one of auto, any, tool, none")
    parallel = not v.optional_bool(choice, "disable_parallel_tool_use", "tool_choice.")
    if kind == "none":
        return ToolChoice("none"), parallel
    if kind == "auto":
        return ToolChoice("auto"), parallel
    if kind == "any":
        return ToolChoice("required"), parallel
    name = v.as_str(v.require(choice, "name", "tool_choice."), "tool_choice.name")
    if name not in names:
        raise v.invalid("tool_choice.name", "expected the name of a tool in 'tools'")
    return ToolChoice("required", (name,)), parallel


def _parse_thinking(value: Any) -> bool | None:
    if value is None:
        return None
    thinking = v.as_object(value, "thinking")
    kind = thinking.get("type")
    if not isinstance(kind, str) or kind not in _THINKING:
        raise v.invalid("thinking.type", "expected one of enabled, adaptive, disabled")
    if kind == "enabled":
        v.require(thinking, "budget_tokens", "thinking.")
        v.optional_int(
            thinking,
            "budget_tokens",
            minimum=MIN_THINKING_BUDGET,
            maximum=v.MAX_TOKENS_LIMIT,
            prefix="thinking.",
        )
    return _THINKING[kind]


def _parse_output(body: Mapping[str, Any]) -> OutputConstraint | None:
    # `output_config.format` is the current field; `output_format` the structured-outputs
    # beta's, which older SDKs still send. Both are checked; the current one wins.
    config = body.get("output_config")
    fmt = None if config is None else v.as_object(config, "output_config").get("format")
    current = _parse_format(fmt, "output_config.format")
    return current or _parse_format(body.get("output_format"), "output_format")


def _parse_format(value: Any, field: str) -> OutputConstraint | None:
    if value is None:
        return None
    fmt = v.as_object(value, field)
    if fmt.get("type") != "json_schema":
        raise v.invalid(f"{field}.type", 'expected "json_schema"')
    schema = v.as_object(v.require(fmt, "schema", f"{field}."), f"{field}.schema")
    return OutputConstraint("json_schema", schema=schema)


def parse_messages(value: Any) -> tuple[ChatMessage, ...]:
    """`messages` as chat turns. A user message's `tool_result` blocks become tool turns, in
    order with the text around them; an assistant message's `tool_use` blocks become its
    `tool_calls`. Thinking blocks are accepted and left out of the prompt."""
    turns: list[ChatMessage] = []
    names: dict[str, str] = {}  # tool_use id → tool name, for the tool_result turns
    for field, message in v.objects(value, "messages", non_empty=True):
        role = v.as_str(v.require(message, "role", f"{field}."), f"{field}.role")
        content = v.require(message, "content", f"{field}.")
        if role == "user":
            turns.extend(_user_turns(content, f"{field}.content", names))
        elif role == "assistant":
            turns.append(_assistant_turn(content, f"{field}.content", names))
        else:
            raise v.invalid(f"{field}.role", "expected one of user, assistant")
    return tuple(turns)


def _blocks(content: Any, field: str) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(block type, block field, block) for each block of an array `content`."""
    if not isinstance(content, list):
        raise v.invalid(field, "expected a string or an array of content blocks")
    blocks = []
    for index, item in enumerate(content):
        block_field = f"{field}[{index}]"
        block = v.as_object(item, block_field)
        kind = block.get("type")
        blocks.append((kind if isinstance(kind, str) else "", block_field, block))
    return blocks


def _block_text(block: Mapping[str, Any], field: str) -> str:
    return v.as_str(v.require(block, "text", f"{field}."), f"{field}.text")


def _unsupported(field: str, allowed: str) -> InvalidRequestError:
    return v.invalid(f"{field}.type", f"expected one of {allowed} (this server reads text only)")


def _user_turns(content: Any, field: str, names: Mapping[str, str]) -> list[ChatMessage]:
    if isinstance(content, str):
        return [ChatMessage("user", content)]
    turns: list[ChatMessage] = []
    texts: list[str] = []
    for kind, block_field, block in _blocks(content, field):
        if kind == "text":
            texts.append(_block_text(block, block_field))
        elif kind == "tool_result":
            if texts:
                turns.append(ChatMessage("user", "".join(texts)))
                texts = []
            turns.append(_tool_turn(block, block_field, names))
        else:
            raise _unsupported(block_field, "text, tool_result")
    if texts or not turns:
        turns.append(ChatMessage("user", "".join(texts)))
    return turns


def _tool_turn(block: Mapping[str, Any], field: str, names: Mapping[str, str]) -> ChatMessage:
    call_id = v.as_str(v.require(block, "tool_use_id", f"{field}."), f"{field}.tool_use_id")
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts = []
        for kind, part_field, part in _blocks(content, f"{field}.content"):
            if kind != "text":
                raise _unsupported(part_field, "text")
            texts.append(_block_text(part, part_field))
        text = "".join(texts)
    if v.optional_bool(block, "is_error", f"{field}."):
        text = ERROR_PREFIX + text
    # A result for no earlier tool_use keeps no name: the API refuses it, this server lets
    # the backend see it (do not fix: prompts trimmed by clients often lose the call).
    return ChatMessage("tool", text, tool_call_id=call_id, name=names.get(call_id))


def _assistant_turn(content: Any, field: str, names: dict[str, str]) -> ChatMessage:
    if isinstance(content, str):
        return ChatMessage("assistant", content)
    texts: list[str] = []
    calls: list[ToolCall] = []
    for kind, block_field, block in _blocks(content, field):
        if kind == "text":
            texts.append(_block_text(block, block_field))
        elif kind == "tool_use":
            call_id = v.as_str(v.require(block, "id", f"{block_field}."), f"{block_field}.id")
            name = v.as_str(v.require(block, "name", f"{block_field}."), f"{block_field}.name")
            arguments = v.as_object(
                v.require(block, "input", f"{block_field}."), f"{block_field}.input"
            )
            names[call_id] = name
            calls.append(ToolCall(call_id, name, json.dumps(arguments, ensure_ascii=False)))
        elif kind == "thinking":
            v.as_str(v.require(block, "thinking", f"{block_field}."), f"{block_field}.thinking")
        elif kind == "redacted_thinking":
            v.as_str(v.require(block, "data", f"{block_field}."), f"{block_field}.data")
        else:
            raise _unsupported(block_field, "text, tool_use, thinking, redacted_thinking")
    return ChatMessage("assistant", "".join(texts), tool_calls=tuple(calls))
