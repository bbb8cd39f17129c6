"""Stored responses as conversation turns: what `previous_response_id` continues from, and
what a finished response leaves for the next one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tokenwire.dialects import _validate as v
from tokenwire.errors import NotFoundError
from tokenwire.requests import ChatMessage, ToolCall
from tokenwire.stores.response_store import ResponseStore


def output_turns(output: Sequence[Mapping[str, Any]]) -> tuple[ChatMessage, ...]:
    """A response's output items as one assistant turn: its text and its function calls
    (reasoning is not carried into the next turn, as the chat dialects do not carry it)."""
    text: list[str] = []
    calls: list[ToolCall] = []
    for item in output:
        if item.get("type") == "message":
            text.extend(str(part.get("text", "")) for part in item.get("content", ()))
        elif item.get("type") == "function_call":
            calls.append(ToolCall(item["call_id"], item["name"], item["arguments"]))
    if not text and not calls:
        return ()
    return (ChatMessage("assistant", "".join(text), tool_calls=tuple(calls)),)


def prior_turns(store: ResponseStore | None, previous_response_id: str) -> tuple[ChatMessage, ...]:
    """The stored conversation `previous_response_id` names.

    Raises:
        InvalidRequestError: this server keeps no responses, or that one is still running.
        NotFoundError: no response under that id (never stored, expired or deleted): a 404
            naming `previous_response_id`, as the API answers.
    """
    if store is None:
        raise v.invalid(
            "previous_response_id", "this server stores no responses (the response store is off)"
        )
    stored = store.get(previous_response_id)
    if stored is None:
        raise NotFoundError(
            f"Previous response with id {previous_response_id[:100]!r} not found (it was "
            "never stored, was created with store=false, expired or was deleted).",
            param="previous_response_id",
        )
    if stored.status in ("queued", "in_progress"):
        raise v.invalid(
            "previous_response_id",
            f"response {previous_response_id[:100]!r} is still {stored.status}; continue it "
            "once it has finished",
        )
    return stored.turns
