"""`tool_calls`: a text backend's tool-call markup becomes `ToolCallDelta` events.

The markup is parsed as it streams: a call's id and name leave as soon as the name is read,
its arguments object as its text arrives. A marker split across tokens is held back, as a
stop string's beginning is. Formats (`format=`):

- `hermes` (Hermes, Qwen 2.5/3): `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
  any number in a row.
- `llama3_json` (Llama 3.1-3.3): `{"name": ..., "parameters": {...}}` opening the output, or
  after `<|python_tag|>`; several separated by `;`.
- `mistral`: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`.

Markup that is not a call passes through as text. A call is committed once its name is read:
if its markup breaks after that, the call ends there and the rest passes through as text.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from tokenwire.events import Event, Finish, TokenDelta, ToolCallDelta
from tokenwire.interfaces import Generate
from tokenwire.middlewares._markup import Carry, JsonValue, possible_start
from tokenwire.pipeline import closing
from tokenwire.requests import GenerationRequest

__all__ = ["FORMATS", "ToolCallParserMiddleware"]

_ARGUMENT_KEYS = ("arguments", "parameters")


@dataclass(frozen=True, slots=True)
class _Format:
    starts: tuple[str, ...]  # markers that open a group of calls
    end: str = ""  # marker that closes a group ("" for none)
    array: bool = False  # the group's calls are a JSON array
    separator: str = ""  # between calls of one group ("": one call per group)
    at_start: bool = False  # a bare `{` opening the output starts a group too


FORMATS = {
    "hermes": _Format(("<tool_call>",), end="</tool_call>"),
    "llama3_json": _Format(("<|python_tag|>",), separator=";", at_start=True),
    "mistral": _Format(("[TOOL_CALLS]",), array=True, separator=","),
}


class ToolCallParserMiddleware:
    """Parses tool-call markup out of the answer text of requests that offer tools.

    Requests without tools (or with `tool_choice` "none") pass through untouched. The
    `Finish` reason becomes "tool_calls" when a call was made and the backend said "stop".
    A backend whose output carries markup declares `tool_call_format`; the app then puts
    this middleware right above it (see docs/plugins.md).

    Args:
        app: the next `Generate`.
        format: the markup: "hermes" (default), "llama3_json" or "mistral".
    """

    def __init__(self, app: Generate, *, format: str = "hermes") -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown tool-call format {format!r}; known: {', '.join(FORMATS)}")
        self.app = app
        self.format = format

    def __call__(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if not request.tools or request.tool_choice.mode == "none":
            return self.app(request)  # no parsing, not even a layer: zero cost per token
        return self._parse(request)

    async def _parse(self, request: GenerationRequest) -> AsyncIterator[Event]:
        parser = ToolCallParser(FORMATS[self.format])
        async with closing(self.app(request)) as events:
            async for event in events:
                if isinstance(event, TokenDelta) and event.channel == "answer":
                    for out in parser.feed(event):
                        yield out
                elif isinstance(event, Finish):
                    for out in parser.finish():
                        yield out
                    if parser.calls and event.reason == "stop":
                        event = replace(event, reason="tool_calls")
                    yield event
                else:
                    yield event


# Parser modes: plain text; after a group's start marker; inside a call object; after one;
# after a separator, before the next call.
_TEXT, _OPEN, _OBJECT, _AFTER, _NEXT = range(5)


class ToolCallParser:
    """One stream's parser: `feed` each answer delta, then `finish`; both return events."""

    def __init__(self, fmt: _Format) -> None:
        self.fmt = fmt
        self.calls = 0  # calls committed (the next one's index)
        self._mode = _TEXT
        self._at_start = fmt.at_start
        self._first_chars = {marker[0] for marker in fmt.starts}
        self._held = ""  # text that may begin a start marker
        self._spaces = ""  # whitespace after a call: dropped unless text follows
        self._raw = ""  # markup read and not sent: text again if it turns out not to be a call
        self._carry = Carry()
        self._out: list[Event] = []
        self._last_was_call = False
        self._in_array = False
        self._end_matched = 0
        self._reset_object()

    def _reset_object(self) -> None:
        self._committed = False
        self._state = "key_or_close"
        self._value: JsonValue | None = None
        self._key: str | None = None
        self._buffer = ""  # the key, name or string-arguments value being read
        self._arguments = ""  # arguments read before the name: sent with it
        self._sent_arguments = False

    def feed(self, delta: TokenDelta) -> list[Event]:
        text = delta.text
        if (
            self._mode == _TEXT
            and not (self._held or self._spaces or self._carry or self._at_start)
            and not any(char in text for char in self._first_chars)
            and not (self.calls and text.isspace())
        ):
            self._last_was_call = False
            return [delta]
        self._carry.take(delta)
        self._out = []
        self._read(text)
        return self._flush_out(keep_logprobs=delta.logprobs is not None)

    def finish(self) -> list[Event]:
        self._out = []
        if self._mode == _TEXT:
            held, self._held = self._held, ""
            self._text(held)
        elif not self._committed and self._mode != _AFTER:
            raw, self._raw = self._raw, ""
            self._text(raw)
        # A committed call cut short stays as it is; its closing markup is dropped.
        self._mode = _TEXT
        return self._flush_out(keep_logprobs=self._carry.logprobs is not None)

    def _flush_out(self, *, keep_logprobs: bool) -> list[Event]:
        out = self._out
        if keep_logprobs:
            out = [
                replace(e, logprobs=()) if isinstance(e, TokenDelta) and e.logprobs is None else e
                for e in out
            ]
        if out:
            self._carry.attach(out)
        elif self._carry and self._last_was_call and self._mode == _TEXT:
            # The closing markup of the call just sent: counted with it. (Markup inside a
            # call waits for the next fragment, so a call is not a stream of empty deltas.)
            out = [ToolCallDelta(self.calls - 1, token_ids=self._carry.ids)]
            self._carry.ids, self._carry.logprobs = (), None
        if out:
            self._last_was_call = isinstance(out[-1], ToolCallDelta)
        return out

    # Reading --------------------------------------------------------------------------

    def _read(self, text: str) -> None:
        while text:
            if self._mode == _TEXT:
                rest = self._scan_text(text)
                if rest is None:
                    return
                text = rest
                continue
            for position, char in enumerate(text):
                again = self._char(char)
                if again is not None:  # back to text, re-reading `again` first
                    text = again + text[position + 1 :]
                    break
            else:
                return

    def _scan_text(self, text: str) -> str | None:
        """Read plain text; the rest after a start marker (now in a group), else None."""
        buffer, self._held = self._held + text, ""
        if self._at_start:
            stripped = buffer.lstrip()
            if not stripped:
                self._held = buffer
                return None
            self._at_start = False
            if stripped[0] == "{":
                self._open(buffer[: len(buffer) - len(stripped)])
                return stripped
        found: tuple[int, str] | None = None
        for marker in self.fmt.starts:
            index = buffer.find(marker)
            if index != -1 and (found is None or index < found[0]):
                found = (index, marker)
        if found is not None:
            index, marker = found
            self._text(buffer[:index])
            self._open(marker)
            return buffer[index + len(marker) :]
        keep = possible_start(buffer, self.fmt.starts)
        self._text(buffer[: len(buffer) - keep])
        self._held = buffer[len(buffer) - keep :]
        return None

    def _open(self, raw: str) -> None:
        self._mode, self._raw, self._in_array = _OPEN, raw, False
        self._reset_object()

    def _char(self, char: str) -> str | None:
        """One character of markup; a string to re-read as text when it is not a call."""
        mode = self._mode
        if mode == _OBJECT:
            return self._object_char(char)
        self._raw += char
        if mode == _AFTER:
            return self._after_char(char)
        if char.isspace():
            return None
        if mode == _OPEN and self.fmt.array and not self._in_array:
            if char == "[":
                self._in_array = True
                return None
            return self._fail()
        if char == "{":
            self._mode = _OBJECT
            self._reset_object()
            return None
        return self._fail()

    def _object_char(self, char: str) -> str | None:
        state = self._state
        if state == "value":
            return self._value_char(char)
        if state != "key" and char.isspace():
            self._raw += char
            return None
        if state == "value_start":
            self._value = JsonValue()
            self._state = "value"
            return self._value_char(char)
        self._raw += char
        if state == "key_or_close":
            if char == '"':
                self._state, self._value, self._buffer = "key", JsonValue(), ""
                return self._key_char(char)
            if char == "}":
                return self._close_object()
        elif state == "key":
            return self._key_char(char)
        elif state == "colon" and char == ":":
            self._state = "value_start"
            return None
        elif state == "comma_or_close":
            if char == ",":
                self._state = "key_or_close"
                return None
            if char == "}":
                return self._close_object()
        return self._fail()

    def _key_char(self, char: str) -> str | None:
        assert self._value is not None
        self._buffer += char
        if self._value.step(char) == JsonValue.END:
            try:
                self._key = json.loads(self._buffer)
            except ValueError:
                return self._fail()
            self._state, self._buffer = "colon", ""
        return None

    def _value_char(self, char: str) -> str | None:
        value = self._value
        assert value is not None
        step = value.step(char)
        if step == JsonValue.AFTER:
            self._state = "comma_or_close"
            return self._object_char(char)
        key = self._key
        streamed = key in _ARGUMENT_KEYS and value.first == "{"
        if streamed:
            if self._committed:
                self._send_arguments(char)
            else:
                self._raw += char
                self._arguments += char
        else:
            self._raw += char
            if key == "name" or (key in _ARGUMENT_KEYS and value.first == '"'):
                self._buffer += char
        if step != JsonValue.END:
            return None
        self._state = "comma_or_close"
        if key == "name":
            name = _decode(self._buffer) if value.first == '"' else None
            if not isinstance(name, str) or self._committed:
                return self._fail()
            self._commit(name)
        elif key in _ARGUMENT_KEYS and value.first == '"':
            arguments = _decode(self._buffer)
            if isinstance(arguments, str):
                if self._committed:
                    self._send_arguments(arguments)
                else:
                    self._arguments = arguments
        self._buffer = ""
        return None

    def _commit(self, name: str) -> None:
        self._spaces = ""
        self._out.append(ToolCallDelta(self.calls, f"call_{secrets.token_hex(12)}", name))
        self.calls += 1
        self._committed = True
        self._raw = ""  # from here on only markup that is not sent
        if self._arguments:
            self._send_arguments(self._arguments)

    def _send_arguments(self, text: str) -> None:
        self._sent_arguments = True
        last = self._out[-1] if self._out else None
        if isinstance(last, ToolCallDelta) and last.index == self.calls - 1:
            self._out[-1] = replace(last, arguments=last.arguments + text)
        else:
            self._out.append(ToolCallDelta(self.calls - 1, arguments=text))

    def _close_object(self) -> str | None:
        if not self._committed:
            return self._fail()
        if not self._sent_arguments:
            self._send_arguments("{}")
        self._mode, self._raw, self._end_matched = _AFTER, "", 0
        return None

    def _after_char(self, char: str) -> str | None:
        fmt = self.fmt
        if self._end_matched:
            if char != fmt.end[self._end_matched]:
                return self._fail()
            self._end_matched += 1
        elif char.isspace():
            return None
        elif fmt.end and char == fmt.end[0]:
            self._end_matched = 1
        elif fmt.separator and char == fmt.separator:
            self._mode, self._raw = _NEXT, char
            self._reset_object()
            return None
        elif not (fmt.array and char == "]"):
            return self._fail()
        if fmt.end and self._end_matched < len(fmt.end):
            return None
        self._mode, self._raw = _TEXT, ""  # the group is done
        return None

    def _fail(self) -> str:
        """Not (or no longer) a call: what was read goes back to being text."""
        raw, self._raw = self._raw, ""
        committed = self._committed  # the name went out: nothing of this call to take back
        self._mode = _TEXT
        self._reset_object()
        if committed or not raw:
            return raw
        # Send the first character as text and re-read the rest: it may hold a real call.
        self._text(raw[0])
        return raw[1:]

    def _text(self, text: str) -> None:
        if not text:
            return
        if self.calls:
            # Whitespace between and after calls is formatting, not an answer.
            text = self._spaces + text
            if text.isspace():
                self._spaces = text
                return
            self._spaces = ""
        last = self._out[-1] if self._out else None
        if isinstance(last, TokenDelta):
            self._out[-1] = replace(last, text=last.text + text)
        else:
            self._out.append(TokenDelta(text))


def _decode(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None
