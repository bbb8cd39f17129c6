"""The Responses API's semantic stream: `response.created`, then each output item added,
filled by deltas and done, then one of `response.completed`, `.incomplete` or `.failed`.

`ResponseStream` keeps the whole per-response state — item ids, output and content indices,
the output so far, and `sequence_number`, which counts every payload of the stream from 0 —
so a stored or resumed response can be rebuilt from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tokenwire.dialects._openai_logprobs import logprobs_list
from tokenwire.dialects._responses_object import (
    ResponseHead,
    error_object,
    function_call_item,
    message_item,
    output_text,
    reasoning_item,
    response_object,
    usage_object,
)
from tokenwire.dialects._wire import id_tail, payload
from tokenwire.errors import GenerationError, TokenwireError
from tokenwire.events import Finish, TokenDelta, ToolCallDelta
from tokenwire.interfaces import Payload

ItemKind = Literal["reasoning", "message", "function_call"]


@dataclass(slots=True)
class OpenItem:
    """The output item being streamed: its text (or arguments) so far."""

    kind: ItemKind
    id: str
    output_index: int
    parts: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    call_index: int = -1
    call_id: str = ""
    name: str = ""

    def item(self, status: str, *, added: bool = False) -> dict[str, Any]:
        """The item as it stands; as `added`, before its content part (which the
        `response.content_part.added` that follows brings)."""
        text = "".join(self.parts)
        if self.kind == "reasoning":
            return reasoning_item(self.id, status, None if added else text)
        if self.kind == "message":
            content = [] if added else [output_text(text, self.logprobs)]
            return message_item(self.id, status, content)
        return function_call_item(self.id, self.call_id, self.name, text, status)


@dataclass(slots=True)
class ResponseStream:
    """Renders one response's events as Responses stream payloads."""

    head: ResponseHead
    logprobs: bool = False
    sequence_number: int = 0
    output: list[dict[str, Any]] = field(default_factory=list)
    current: OpenItem | None = None
    reasoning_tokens: int = 0
    # The response object the last event carried: what a stored response keeps.
    final: dict[str, Any] | None = None

    def snapshot(self) -> dict[str, Any]:
        """The response object as it stands: "queued" before the stream opened, the output
        so far while it runs, the final object once it ended."""
        if self.final is not None:
            return self.final
        return self._response("queued" if self.sequence_number == 0 else "in_progress")

    def _emit(self, kind: str, **fields: Any) -> Payload:
        document = {"type": kind, **fields, "sequence_number": self.sequence_number}
        self.sequence_number += 1
        return payload(document, event=kind)

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        output = list(self.output)
        if self.current is not None:
            output.append(self.current.item("incomplete" if status == "failed" else "in_progress"))
        return response_object(self.head, status, output, **extra)

    def open(self) -> list[Payload]:
        return [
            self._emit("response.created", response=self._response("in_progress")),
            self._emit("response.in_progress", response=self._response("in_progress")),
        ]

    def _start(self, kind: ItemKind, **call: Any) -> list[Payload]:
        """Close the item being streamed, then add a new one at the next output index."""
        payloads = self._close("completed")
        prefix = {"reasoning": "rs", "message": "msg", "function_call": "fc"}[kind]
        tail = id_tail(self.head.request.request_id)
        item = OpenItem(kind, f"{prefix}_{tail}_{len(self.output)}", len(self.output), **call)
        self.current = item
        payloads.append(
            self._emit(
                "response.output_item.added",
                output_index=item.output_index,
                item=item.item("in_progress", added=True),
            )
        )
        if item.kind == "message":
            part = output_text("", [])
        elif item.kind == "reasoning":
            part = {"type": "reasoning_text", "text": ""}
        else:
            return payloads
        payloads.append(self._emit("response.content_part.added", **self._where(), part=part))
        return payloads

    def _where(self, content: bool = True) -> dict[str, Any]:
        item = self.current
        assert item is not None
        where: dict[str, Any] = {"item_id": item.id, "output_index": item.output_index}
        if content:
            where["content_index"] = 0
        return where

    def text(self, event: TokenDelta) -> list[Payload]:
        kind: ItemKind = "reasoning" if event.channel == "reasoning" else "message"
        logprobs = (
            logprobs_list(event.logprobs)
            if self.logprobs and kind == "message" and event.logprobs is not None
            else []
        )
        if not event.text and not logprobs:
            return []
        payloads: list[Payload] = []
        if self.current is None or self.current.kind != kind:
            payloads = self._start(kind)
        item = self.current
        assert item is not None
        item.parts.append(event.text)
        if kind == "reasoning":
            self.reasoning_tokens += len(event.token_ids)
            payloads.append(
                self._emit("response.reasoning_text.delta", **self._where(), delta=event.text)
            )
            return payloads
        item.logprobs.extend(logprobs)
        payloads.append(
            self._emit(
                "response.output_text.delta", **self._where(), delta=event.text, logprobs=logprobs
            )
        )
        return payloads

    def call(self, event: ToolCallDelta) -> list[Payload]:
        item = self.current
        payloads: list[Payload] = []
        if item is None or item.kind != "function_call" or item.call_index != event.index:
            tail = id_tail(self.head.request.request_id)
            payloads = self._start(
                "function_call",
                call_index=event.index,
                # The first delta of a call names it; a backend that skipped that gets an id.
                call_id=event.id or f"call_{tail}_{event.index}",
                name=event.name or "",
            )
            item = self.current
            assert item is not None
        if event.arguments:
            item.parts.append(event.arguments)
            payloads.append(
                self._emit(
                    "response.function_call_arguments.delta",
                    **self._where(content=False),
                    delta=event.arguments,
                )
            )
        return payloads

    def _close(self, status: str) -> list[Payload]:
        """The done events of the item being streamed, which joins the output."""
        item = self.current
        if item is None:
            return []
        text = "".join(item.parts)
        payloads: list[Payload] = []
        if item.kind == "message":
            payloads.append(
                self._emit(
                    "response.output_text.done", **self._where(), text=text, logprobs=item.logprobs
                )
            )
            part = output_text(text, item.logprobs)
        elif item.kind == "reasoning":
            payloads.append(self._emit("response.reasoning_text.done", **self._where(), text=text))
            part = {"type": "reasoning_text", "text": text}
        else:
            payloads.append(
                self._emit(
                    "response.function_call_arguments.done",
                    **self._where(content=False),
                    name=item.name,
                    arguments=text,
                )
            )
        if item.kind != "function_call":
            payloads.append(self._emit("response.content_part.done", **self._where(), part=part))
        done = item.item(status)
        payloads.append(
            self._emit("response.output_item.done", output_index=item.output_index, item=done)
        )
        self.output.append(done)
        self.current = None
        return payloads

    def finish(self, event: Finish) -> list[Payload]:
        if event.reason == "error":
            return self.fail(GenerationError("The generation failed."))
        length = event.reason == "length"
        payloads = self._close("incomplete" if length else "completed")
        usage = usage_object(event.usage, self.reasoning_tokens)
        if length:
            response = self._response(
                "incomplete", usage=usage, incomplete_reason="max_output_tokens"
            )
            self.final = response
            payloads.append(self._emit("response.incomplete", response=response))
            return payloads
        # A cancelled stream ends as completed with status "cancelled" (the status the API
        # gives a cancelled response): the API has no terminal event of its own for it.
        status = "cancelled" if event.reason == "cancelled" else "completed"
        self.final = self._response(status, usage=usage)
        payloads.append(self._emit("response.completed", response=self.final))
        return payloads

    def fail(self, error: TokenwireError) -> list[Payload]:
        """One `response.failed`, carrying the output so far (the open item "incomplete").

        The API's separate `error` event is for errors outside a response's life; a response
        that fails ends with `response.failed` alone, as the last event.
        """
        response = self._response("failed", error=error_object(error))
        self.final = response
        return [self._emit("response.failed", response=response)]
