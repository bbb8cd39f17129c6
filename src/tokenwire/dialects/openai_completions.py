"""OpenAI legacy Completions (`POST /v1/completions`): raw-prompt `text_completion` shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenwire.completion import Completion
from tokenwire.dialects import _validate as v
from tokenwire.dialects._openai_common import (
    ChunkEnvelope,
    finish_reason,
    parse_options,
    render_error,
    require_one,
    usage_object,
)
from tokenwire.dialects._openai_logprobs import legacy_logprobs
from tokenwire.dialects._wire import id_tail
from tokenwire.errors import GenerationError, TokenwireError
from tokenwire.events import Event, Finish, TokenDelta
from tokenwire.interfaces import ErrorBody, Payload
from tokenwire.requests import GenerationRequest

DEFAULT_MAX_TOKENS = 16
"""The API's documented default for `max_tokens` on this endpoint (chat has none)."""
MAX_LOGPROBS = 5
"""The most alternatives per token the legacy `logprobs` field may ask for."""


class OpenAICompletionsDialect:
    """The OpenAI Completions API; one string prompt, one choice, no echo."""

    name: str = "openai-completions"
    routes: Sequence[str] = ("/v1/completions",)
    sse_fields: bool = True
    keepalive: Payload | None = None

    def parse(
        self, body: Any, path_params: Mapping[str, str], request_id: str, model_id: str
    ) -> OpenAICompletionsExchange:
        """Validate a completion request.

        Raises:
            InvalidRequestError: a field is missing, of the wrong type or out of range.
            NotFoundError: the body names a model other than `model_id`.
        """
        body = v.as_object(body, "body")
        limit = v.max_tokens(body, "max_tokens")
        options = parse_options(
            body, model_id, max_tokens=DEFAULT_MAX_TOKENS if limit is None else limit
        )
        require_one(body, "best_of")
        if v.optional_bool(body, "echo"):
            raise v.invalid("echo", "only false is supported")
        # Legacy `logprobs` is a count: the sampled token's logprob plus that many alternatives.
        top = v.optional_int(body, "logprobs", minimum=0, maximum=MAX_LOGPROBS)
        request = GenerationRequest(
            model=options.model,
            prompt=_prompt(v.require(body, "prompt")),
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            seed=options.seed,
            stop=options.stop,
            request_id=request_id,
            logprobs=top is not None,
            top_logprobs=top or 0,
        )
        envelope = ChunkEnvelope(
            id=f"cmpl-{id_tail(request_id)}",
            object="text_completion",
            model=options.model,
            include_usage=options.include_usage,
        )
        return OpenAICompletionsExchange(request, options.stream, envelope)

    def render_error(self, error: TokenwireError) -> ErrorBody:
        return render_error(error)


def _prompt(value: Any) -> str:
    # The API also takes several prompts or token-id arrays; a list of one string is the
    # only list form that still maps to one generation.
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if not isinstance(value, str):
        raise v.invalid("prompt", "expected a string or an array of exactly one string")
    return value


def _choice(text: str, reason: str | None = None, logprobs: Any = None) -> dict[str, Any]:
    return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": reason}


@dataclass(slots=True)
class OpenAICompletionsExchange:
    """One completion: renders `text_completion` chunks or one `text_completion`."""

    request: GenerationRequest
    stream: bool
    envelope: ChunkEnvelope
    _offset: int = 0  # characters of answer sent so far, for logprobs' `text_offset`

    def open(self) -> Sequence[Payload]:
        return []

    def render(self, event: Event) -> Sequence[Payload]:
        if isinstance(event, TokenDelta):
            # This API has no place for reasoning text; a prompt request gets none anyway.
            if event.channel == "reasoning":
                return []
            logprobs = None
            if event.logprobs is not None and self.request.logprobs:
                logprobs = legacy_logprobs(event.logprobs, self._offset)
            elif not event.text:
                return []
            self._offset += len(event.text)
            return [self.envelope.chunk(_choice(event.text, logprobs=logprobs))]
        if not isinstance(event, Finish):
            return []  # Progress notes are for middlewares; they have no wire form.
        if event.reason == "error":
            return self.fail(GenerationError("The generation failed."))
        return self.envelope.closing(_choice("", finish_reason(event)), event.usage)

    def identity(self) -> Mapping[str, str]:
        return self.envelope.identity()

    def restore_identity(self, identity: Mapping[str, str]) -> None:
        self.envelope.restore_identity(identity)

    def fail(self, error: TokenwireError) -> Sequence[Payload]:
        return self.envelope.failure(error)

    def respond(self, completion: Completion) -> Mapping[str, Any]:
        text, finish = completion.text, completion.finish
        logprobs = None
        if completion.logprobs is not None and self.request.logprobs:
            logprobs = legacy_logprobs(completion.logprobs, 0)
        return {
            **self.envelope.head(),
            "choices": [_choice(text, finish_reason(finish), logprobs)],
            "usage": usage_object(finish.usage),
        }
