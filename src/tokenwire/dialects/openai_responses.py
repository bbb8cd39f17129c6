"""OpenAI Responses (`POST /v1/responses`): `input` items in, `response` object and its
semantic stream events (`response.created` … `response.completed`) out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenwire.completion import Completion
from tokenwire.dialects import _validate as v
from tokenwire.dialects._openai_common import render_error
from tokenwire.dialects._responses_input import (
    parse_include,
    parse_input,
    parse_metadata,
)
from tokenwire.dialects._responses_object import (
    ResponseHead,
    function_call_item,
    logprobs_list,
    message_item,
    output_text,
    reasoning_item,
    response_object,
    usage_object,
)
from tokenwire.dialects._responses_stream import ResponseStream
from tokenwire.dialects._wire import id_tail
from tokenwire.errors import GenerationError, TokenwireError
from tokenwire.events import Event, Finish, TokenDelta, ToolCallDelta
from tokenwire.interfaces import ErrorBody, Payload
from tokenwire.requests import GenerationRequest

# Fields that need stored responses; they land with the follow-up that stores them, and until
# then they are refused rather than silently ignored.
_NEEDS_STORAGE = ("background", "previous_response_id", "conversation")


class OpenAIResponsesDialect:
    """The OpenAI Responses API: text and function-call items, structured output, logprobs
    and reasoning; no hosted tools and no stored state yet."""

    name: str = "openai-responses"
    routes: Sequence[str] = ("/v1/responses",)
    sse_fields: bool = True
    keepalive: Payload | None = None

    def parse(
        self, body: Any, path_params: Mapping[str, str], request_id: str, model_id: str
    ) -> OpenAIResponsesExchange:
        """Validate a create-response request.

        Raises:
            InvalidRequestError: a field is missing, of the wrong type or out of range, or
                asks for what this server does not do (hosted tools, images, stored state).
            NotFoundError: the body names a model other than `model_id`.
        """
        body = v.as_object(body, "body")
        model = v.as_str(v.require(body, "model"), "model")
        v.check_model(model, model_id)
        for key in _NEEDS_STORAGE:
            value = body.get(key)
            # `"background": false` asks for what is served; any other value needs storage.
            if value is not None and not (key == "background" and value is False):
                raise v.invalid(key, "not supported yet (stored responses are not served)")
        store = v.optional_bool(body, "store")
        parse_include(body.get("include"))
        metadata = parse_metadata(body.get("metadata"))
        agent = parse_input(body)
        max_output_tokens = v.max_tokens(body, "max_output_tokens")
        parallel = v.optional_bool(body, "parallel_tool_calls")
        request = GenerationRequest(
            model=model,
            messages=agent.messages,
            max_tokens=max_output_tokens,
            temperature=v.optional_number(body, "temperature", minimum=0, maximum=2),
            top_p=v.optional_number(body, "top_p", minimum=0, maximum=1, exclusive_minimum=True),
            request_id=request_id,
            tools=agent.tools,
            tool_choice=agent.tool_choice,
            parallel_tool_calls=True if parallel is None else parallel,
            constraint=agent.constraint,
            logprobs=agent.logprobs,
            top_logprobs=agent.top_logprobs,
            reasoning=agent.reasoning,
        )
        text = body.get("text") or {}
        reasoning = body.get("reasoning") or {}
        head = ResponseHead(
            id=f"resp_{id_tail(request_id)}",
            model=model,
            request=request,
            instructions=body.get("instructions"),
            metadata=metadata,
            # Echoed only: storing responses is the follow-up's (docs/dialects-and-transports.md).
            store=True if store is None else store,
            text_format=dict(text.get("format") or {"type": "text"}),
            reasoning_effort=reasoning.get("effort"),
            max_output_tokens=max_output_tokens,
        )
        stream = bool(v.optional_bool(body, "stream"))
        return OpenAIResponsesExchange(request, stream, ResponseStream(head, request.logprobs))

    def render_error(self, error: TokenwireError) -> ErrorBody:
        return render_error(error)


@dataclass(slots=True)
class OpenAIResponsesExchange:
    """One response: its stream state (ids, indices, output so far, sequence numbers)."""

    request: GenerationRequest
    stream: bool
    state: ResponseStream

    @property
    def head(self) -> ResponseHead:
        return self.state.head

    def open(self) -> Sequence[Payload]:
        return self.state.open()

    def render(self, event: Event) -> Sequence[Payload]:
        if isinstance(event, TokenDelta):
            return self.state.text(event)
        if isinstance(event, ToolCallDelta):
            return self.state.call(event)
        if isinstance(event, Finish):
            return self.state.finish(event)
        return []  # Progress notes are for middlewares; they have no wire form.

    def fail(self, error: TokenwireError) -> Sequence[Payload]:
        return self.state.fail(error)

    def respond(self, completion: Completion) -> Mapping[str, Any]:
        """The `response` object that `response.completed` (or `.incomplete`) would carry."""
        finish = completion.finish
        if finish.reason == "error":
            raise GenerationError("The generation failed.")
        length = finish.reason == "length"
        status = "incomplete" if length else "completed"
        tail = id_tail(self.request.request_id)
        output: list[dict[str, Any]] = []
        if completion.reasoning:
            output.append(reasoning_item(f"rs_{tail}_{len(output)}", status, completion.reasoning))
        if completion.text or not completion.tool_calls:
            logprobs = (
                logprobs_list(completion.logprobs)
                if self.request.logprobs and completion.logprobs is not None
                else []
            )
            content = [output_text(completion.text, logprobs)]
            output.append(message_item(f"msg_{tail}_{len(output)}", status, content))
        for call in completion.tool_calls:
            output.append(
                function_call_item(
                    f"fc_{tail}_{len(output)}", call.id, call.name, call.arguments, status
                )
            )
        return response_object(
            self.head,
            "cancelled" if finish.reason == "cancelled" else status,
            output,
            # Reasoning tokens are counted from the stream's deltas; a gathered completion
            # keeps none, so a non-streamed response reports 0.
            usage=usage_object(finish.usage),
            incomplete_reason="max_output_tokens" if length else None,
        )
