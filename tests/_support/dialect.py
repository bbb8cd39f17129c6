"""A minimal dialect for transport tests: one flat JSON object per event."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tokenwire import (
    ErrorBody,
    Event,
    Finish,
    GenerationRequest,
    InvalidRequestError,
    Payload,
    TokenwireError,
)
from tokenwire.completion import Completion


def dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


class PlainExchange:
    def __init__(self, request: GenerationRequest, stream: bool) -> None:
        self.request, self.stream = request, stream

    def open(self) -> Sequence[Payload]:
        return [Payload(dump({"type": "open"}), event="open")]

    def render(self, event: Event) -> Sequence[Payload]:
        if isinstance(event, Finish):
            return [
                Payload(dump({"type": "finish", "reason": event.reason}), event="finish"),
                Payload("[END]", sentinel=True),
            ]
        return [Payload(dump({"type": "delta", "text": event.text}), event="delta")]

    def fail(self, error: TokenwireError) -> Sequence[Payload]:
        return [Payload(dump({"type": "error", "message": error.message}), event="error")]

    def respond(self, completion: Completion) -> Mapping[str, Any]:
        return {"text": completion.text, "reason": completion.finish.reason}


class PlainDialect:
    name = "plain"
    routes = ("/plain",)
    sse_fields = True
    keepalive: Payload | None = None

    def parse(
        self, body: Any, path_params: Mapping[str, str], request_id: str, model_id: str
    ) -> PlainExchange:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise InvalidRequestError("'prompt' must be a string", param="prompt")
        request = GenerationRequest(
            model=model_id, prompt=prompt, request_id=request_id, max_tokens=body.get("max_tokens")
        )
        return PlainExchange(request, bool(body.get("stream", True)))

    def render_error(self, error: TokenwireError) -> ErrorBody:
        return ErrorBody(
            error.status_code, {"error": {"kind": error.kind, "message": error.message}}, {}
        )
