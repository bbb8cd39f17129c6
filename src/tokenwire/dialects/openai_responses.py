"""OpenAI Responses (`POST /v1/responses`): `input` items in, `response` object and its
semantic stream events (`response.created` … `response.completed`) out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenwire.completion import Completion
from tokenwire.dialects import _validate as v
from tokenwire.dialects._openai_common import render_error
from tokenwire.dialects._openai_logprobs import logprobs_list
from tokenwire.dialects._responses_input import (
    parse_include,
    parse_input,
    parse_metadata,
)
from tokenwire.dialects._responses_keep import output_turns, prior_turns
from tokenwire.dialects._responses_object import (
    ResponseHead,
    function_call_item,
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
from tokenwire.requests import ChatMessage, GenerationRequest
from tokenwire.stores.response_store import (
    ResponseStore,
    ResponseStoreUnavailableError,
    StoredResponse,
    SyncsResponses,
)

# The WebSocket mode's client event: the create body plus this `type`; its stream is implicit.
WEBSOCKET_CREATE = "response.create"


class OpenAIResponsesDialect:
    """The OpenAI Responses API: text and function-call items, structured output, logprobs
    and reasoning, stored responses (`store`, `previous_response_id`, `background`) when
    given a `ResponseStore`; no hosted tools and no conversations objects.

    Args:
        store: where responses created with `store` (the API's default) are kept; None
            serves them unstored and refuses `previous_response_id` and `background`.
    """

    name: str = "openai-responses"
    routes: Sequence[str] = ("/v1/responses",)
    sse_fields: bool = True
    keepalive: Payload | None = None

    def __init__(self, store: ResponseStore | None = None) -> None:
        self.store = store

    async def prefetch(self, body: Mapping[str, Any]) -> None:
        """Bring the response `previous_response_id` names in from a shared store.

        Raises:
            ResponseStoreUnavailableError: the shared store is unreachable and this replica
                does not hold that response (a 503: it may well exist).
        """
        previous = body.get("previous_response_id")
        if isinstance(previous, str) and isinstance(self.store, SyncsResponses):
            try:
                await self.store.load(previous)
            except ResponseStoreUnavailableError:
                raise ResponseStoreUnavailableError(
                    f"Previous response with id {previous[:100]!r} cannot be looked up now: "
                    "this replica does not hold it, and the response store shared by every "
                    "replica is unreachable; try again.",
                    param="previous_response_id",
                ) from None

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
        if body.get("conversation") is not None:
            raise v.invalid("conversation", "not supported (use previous_response_id)")
        store = v.optional_bool(body, "store") is not False
        background = bool(v.optional_bool(body, "background"))
        if background and not store:
            raise v.invalid("background", "true needs store to be true as well")
        if background and self.store is None:
            raise v.invalid("background", "not served: this server stores no responses")
        previous = v.optional_str(body, "previous_response_id")
        prior = () if previous is None else prior_turns(self.store, previous)
        parse_include(body.get("include"))
        metadata = parse_metadata(body.get("metadata"))
        parsed = parse_input(body)
        # Instructions come first and are not carried over to the next response (the API's
        # rule for previous_response_id); the earlier turns, then this input, follow them.
        split = 0 if body.get("instructions") is None else 1
        turns = prior + parsed.messages[split:]
        max_output_tokens = v.max_tokens(body, "max_output_tokens")
        request = GenerationRequest(
            model=model,
            messages=parsed.messages[:split] + turns,
            max_tokens=max_output_tokens,
            temperature=v.optional_number(body, "temperature", minimum=0, maximum=2),
            top_p=v.optional_number(body, "top_p", minimum=0, maximum=1, exclusive_minimum=True),
            request_id=request_id,
            **parsed.agent.request_fields(),
        )
        text = body.get("text") or {}
        reasoning = body.get("reasoning") or {}
        head = ResponseHead(
            id=f"resp_{id_tail(request_id)}",
            model=model,
            request=request,
            instructions=body.get("instructions"),
            metadata=metadata,
            store=store,
            text_format=dict(text.get("format") or {"type": "text"}),
            reasoning_effort=reasoning.get("effort"),
            max_output_tokens=max_output_tokens,
            background=background,
            previous_response_id=previous,
        )
        stream = body.get("type") == WEBSOCKET_CREATE or bool(v.optional_bool(body, "stream"))
        return OpenAIResponsesExchange(
            request,
            stream,
            ResponseStream(head, request.logprobs),
            store=self.store if store else None,
            turns=turns,
        )

    def render_error(self, error: TokenwireError) -> ErrorBody:
        return render_error(error)


@dataclass(slots=True)
class OpenAIResponsesExchange:
    """One response: its stream state (ids, indices, output so far, sequence numbers), and
    where it is kept once it ends (None when it is not stored)."""

    request: GenerationRequest
    stream: bool
    state: ResponseStream
    store: ResponseStore | None = None
    turns: tuple[ChatMessage, ...] = ()

    @property
    def head(self) -> ResponseHead:
        return self.state.head

    @property
    def background(self) -> bool:
        return self.state.head.background

    def snapshot(self) -> Mapping[str, Any]:
        return self.state.snapshot()

    def identity(self) -> Mapping[str, str]:
        """What a continuing replica needs to render the same events (`KeepsIdentity`)."""
        return {"created_at": str(self.state.head.created_at)}

    def restore_identity(self, identity: Mapping[str, str]) -> None:
        head = self.state.head
        head.created_at = int(identity.get("created_at", head.created_at))

    def detach(self) -> Mapping[str, Any]:
        """Start a background response: it is stored as queued at once, so it can be
        retrieved before its first event."""
        response = self.state.snapshot()
        self._keep(response)
        return response

    async def settle(self) -> None:
        """Wait until what `_keep` stored reached a shared store (other replicas read it)."""
        if isinstance(self.store, SyncsResponses):
            await self.store.flush()

    def _keep(self, response: Mapping[str, Any]) -> None:
        if self.store is not None:
            turns = self.turns + output_turns(response.get("output", ()))
            self.store.put(StoredResponse(response, turns, self.request.request_id))

    def open(self) -> Sequence[Payload]:
        return self.state.open()

    def render(self, event: Event) -> Sequence[Payload]:
        if isinstance(event, TokenDelta):
            return self.state.text(event)
        if isinstance(event, ToolCallDelta):
            return self.state.call(event)
        if isinstance(event, Finish):
            payloads = self.state.finish(event)
            self._keep(self.state.snapshot())
            return payloads
        return []  # Progress notes are for middlewares; they have no wire form.

    def fail(self, error: TokenwireError) -> Sequence[Payload]:
        payloads = self.state.fail(error)
        self._keep(self.state.snapshot())
        return payloads

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
        response = response_object(
            self.head,
            "cancelled" if finish.reason == "cancelled" else status,
            output,
            # Reasoning tokens are counted from the stream's deltas; a gathered completion
            # keeps none, so a non-streamed response reports 0.
            usage=usage_object(finish.usage),
            incomplete_reason="max_output_tokens" if length else None,
        )
        self._keep(response)
        return response
