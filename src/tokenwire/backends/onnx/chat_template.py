"""Rendering chat messages with the model's own Jinja template, in a sandbox."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tokenwire.errors import InvalidRequestError
from tokenwire.requests import ChatMessage, Tool


class ChatTemplate:
    """A compiled chat template; renders messages with `add_generation_prompt=True`.

    The environment matches Hugging Face's (`trim_blocks`, `lstrip_blocks`,
    `raise_exception`, `strftime_now`, `tojson` keeping non-ASCII), so templates written for
    `apply_chat_template` render the same text.
    """

    def __init__(
        self, source: str, *, bos_token: str | None = None, eos_token: str | None = None
    ) -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        env.filters["tojson"] = _tojson
        self.template = env.from_string(source)
        self.uses_tools = "tools" in meta.find_undeclared_variables(env.parse(source))
        """Whether the template renders `tools` itself (else the backend describes them)."""
        self.bos_token = bos_token or ""
        self.eos_token = eos_token or ""

    def render(self, messages: Sequence[ChatMessage], tools: Sequence[Tool] = ()) -> str:
        """The prompt text for `messages`, ending where the assistant's answer starts.

        `tools` are passed as Hugging Face passes them (`{"type": "function", "function":
        {...}}`), and earlier calls as each message's `tool_calls`; only a template that
        `uses_tools` should get them.

        Raises:
            InvalidRequestError: the template rejected the conversation (say, roles that do
                not alternate).
        """
        try:
            return self.template.render(
                messages=[_message(m) for m in messages],
                tools=[_tool(t) for t in tools] or None,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError as exc:
            raise InvalidRequestError(
                f"The model's chat template rejected the messages: {exc}", param="messages"
            ) from None


def _message(message: ChatMessage) -> dict[str, Any]:
    rendered: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        rendered["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        rendered["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        rendered["name"] = message.name
    return rendered


def _tool(tool: Tool) -> dict[str, Any]:
    function = {"name": tool.name, "description": tool.description}
    return {"type": "function", "function": {**function, "parameters": dict(tool.parameters)}}


def _arguments(text: str) -> Any:
    """A call's arguments as the templates expect them: a mapping (text if not JSON)."""
    try:
        return json.loads(text or "{}")
    except ValueError:
        return text


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)
