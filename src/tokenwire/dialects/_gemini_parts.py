"""Gemini `contents` as chat turns: text, `functionCall` and `functionResponse` parts.

Protobuf JSON takes lowerCamelCase and snake_case names alike; errors name the camelCase one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tokenwire.dialects import _validate as v
from tokenwire.requests import ChatMessage, ToolCall

# functionResponse parts come back under the user role; "function" and "tool" are what
# older clients and the Vertex samples send for them.
_ROLES: Mapping[str, str] = {
    "user": "user",
    "model": "assistant",
    "function": "user",
    "tool": "user",
}


def get(body: Mapping[str, Any], camel: str, snake: str) -> Any:
    """A field under either spelling; the camelCase one wins."""
    value = body.get(camel)
    return body.get(snake) if value is None else value


def call_id(turn: int, position: int) -> str:
    """The id of a `functionCall` sent without one: stable for its place in `contents`."""
    return f"call_{turn}_{position}"


def parse_contents(value: Any) -> tuple[ChatMessage, ...]:
    """`contents` as turns. A model turn's functionCall parts become its `tool_calls`; each
    functionResponse part becomes a tool turn (after the text before it), answering the call
    with its `id` or else the earliest unanswered call of its name."""
    items = v.as_list(value, "contents", non_empty=True)
    turns: list[ChatMessage] = []
    pending: list[ToolCall] = []  # calls not yet answered, oldest first
    for index, item in enumerate(items):
        field = f"contents[{index}]"
        content = v.as_object(item, field)
        # The role may be left unset in single-turn requests; it then means the user.
        role = v.optional_str(content, "role", f"{field}.") or "user"
        mapped = _ROLES.get(role)
        if mapped is None:
            raise v.invalid(f"{field}.role", "expected one of user, model, function, tool")
        parts = v.as_list(v.require(content, "parts", f"{field}."), f"{field}.parts")
        if mapped == "assistant":
            turn = _model_turn(parts, field, index)
            pending.extend(turn.tool_calls)
            turns.append(turn)
        else:
            turns.extend(_user_turns(parts, field, index, pending))
    return tuple(turns)


def content_text(value: Any, field: str) -> str:
    """The text of a Content's `parts` (a system instruction's), joined; text parts only."""
    content = v.as_object(value, field)
    parts = v.as_list(v.require(content, "parts", f"{field}."), f"{field}.parts")
    texts = []
    for index, item in enumerate(parts):
        part_field = f"{field}.parts[{index}]"
        text = v.as_object(item, part_field).get("text")
        if text is None:
            raise v.invalid(part_field, "only text parts are supported")
        texts.append(v.as_str(text, f"{part_field}.text"))
    return "".join(texts)


def _kind(part: Mapping[str, Any], field: str) -> str:
    if part.get("text") is not None:
        return "text"
    if get(part, "functionCall", "function_call") is not None:
        return "functionCall"
    if get(part, "functionResponse", "function_response") is not None:
        return "functionResponse"
    raise v.invalid(field, "expected a text, functionCall or functionResponse part")


def _model_turn(parts: list[Any], field: str, turn: int) -> ChatMessage:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for position, item in enumerate(parts):
        part_field = f"{field}.parts[{position}]"
        part = v.as_object(item, part_field)
        kind = _kind(part, part_field)
        if kind == "text":
            text = v.as_str(part["text"], f"{part_field}.text")
            # Thought summaries the model returned are not part of the conversation.
            if not v.optional_bool(part, "thought", f"{part_field}."):
                texts.append(text)
        elif kind == "functionCall":
            call_field = f"{part_field}.functionCall"
            call = v.as_object(get(part, "functionCall", "function_call"), call_field)
            name = v.as_str(v.require(call, "name", f"{call_field}."), f"{call_field}.name")
            args = call.get("args")
            arguments = {} if args is None else v.as_object(args, f"{call_field}.args")
            given = v.optional_str(call, "id", f"{call_field}.")
            calls.append(
                ToolCall(
                    given or call_id(turn, position),
                    name,
                    json.dumps(arguments, ensure_ascii=False),
                )
            )
        else:
            raise v.invalid(f"{part_field}.functionResponse", "expected it in a user turn")
    return ChatMessage("assistant", "".join(texts), tool_calls=tuple(calls))


def _user_turns(
    parts: list[Any], field: str, turn: int, pending: list[ToolCall]
) -> list[ChatMessage]:
    turns: list[ChatMessage] = []
    texts: list[str] = []
    for position, item in enumerate(parts):
        part_field = f"{field}.parts[{position}]"
        part = v.as_object(item, part_field)
        kind = _kind(part, part_field)
        if kind == "text":
            texts.append(v.as_str(part["text"], f"{part_field}.text"))
        elif kind == "functionResponse":
            if texts:
                turns.append(ChatMessage("user", "".join(texts)))
                texts = []
            turns.append(_tool_turn(part, part_field, turn, position, pending))
        else:
            raise v.invalid(f"{part_field}.functionCall", "expected it in a model turn")
    if texts or not turns:
        turns.append(ChatMessage("user", "".join(texts)))
    return turns


def _tool_turn(
    part: Mapping[str, Any], field: str, turn: int, position: int, pending: list[ToolCall]
) -> ChatMessage:
    field = f"{field}.functionResponse"
    reply = v.as_object(get(part, "functionResponse", "function_response"), field)
    name = v.as_str(v.require(reply, "name", f"{field}."), f"{field}.name")
    response = reply.get("response")
    result = {} if response is None else v.as_object(response, f"{field}.response")
    given = v.optional_str(reply, "id", f"{field}.")
    answered = next((c for c in pending if (c.id == given if given else c.name == name)), None)
    if answered is not None:
        pending.remove(answered)
    answer_id = given or (answered.id if answered else call_id(turn, position))
    return ChatMessage(
        "tool", json.dumps(result, ensure_ascii=False), tool_call_id=answer_id, name=name
    )
