"""What `OnnxBackend` checks and derives from a request before it is queued: the fields it
cannot serve, the prompt's tokens, the room left to generate, a continuation's replay."""

from __future__ import annotations

import anyio
from tokenizers import Tokenizer

from tokenwire.backends.onnx.chat_template import ChatTemplate
from tokenwire.backends.onnx.generation import Generation
from tokenwire.backends.onnx.tool_prompt import render_tool_turns
from tokenwire.errors import ContextLengthExceededError, InvalidRequestError, TokenwireError
from tokenwire.events import Event
from tokenwire.requests import GenerationRequest

# OpenAI's range for `top_logprobs`.
MAX_TOP_LOGPROBS = 20


def check_agent_fields(request: GenerationRequest) -> None:
    """Refuse what a client asked for and this backend cannot do, naming the field."""
    if request.reasoning:
        # No model this backend serves has a thinking mode yet; a 400 beats a silent no.
        raise InvalidRequestError(
            "This model cannot reason before answering; send reasoning off or leave it out.",
            param="reasoning",
        )
    if not 0 <= request.top_logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidRequestError(
            f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {request.top_logprobs}",
            param="top_logprobs",
        )
    if request.tools and not request.is_chat and request.tool_choice.mode == "auto":
        raise InvalidRequestError(
            "Tools can be offered only to a chat request (messages), not a raw prompt.",
            param="tools",
        )


def prompt_ids(
    request: GenerationRequest,
    tokenizer: Tokenizer,
    chat_template: ChatTemplate | None,
    model_id: str,
) -> list[int]:
    """The prompt as the model reads it: messages through the chat template, with the
    tools offered (described in a system turn when the template has no tools of its
    own), or the raw prompt with the tokenizer's special tokens.

    Raises:
        InvalidRequestError: messages, and the model has no chat template.
    """
    if request.messages is None:
        return list(tokenizer.encode(request.prompt or "", add_special_tokens=True).ids)
    if chat_template is None:
        raise InvalidRequestError(
            f"Model {model_id!r} has no chat template; send a raw prompt instead.",
            param="messages",
        )
    # tool_choice "none": the model is not told of the tools (it cannot call them).
    tools = request.tools if request.tool_choice.mode != "none" else ()
    if chat_template.uses_tools:
        text = chat_template.render(request.messages, tools)
    else:
        text = chat_template.render(render_tool_turns(request.messages, tools))
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def generation_budget(request: GenerationRequest, prompt_tokens: int, context_length: int) -> int:
    """The most tokens `request` may generate after a prompt of `prompt_tokens`.

    Raises:
        InvalidRequestError: the prompt is empty, or `max_tokens` is below 1.
        ContextLengthExceededError: the prompt fills the context, or `max_tokens` asks for
            more than it leaves.
    """
    if prompt_tokens == 0:
        raise InvalidRequestError("The prompt is empty.", param="prompt")
    if prompt_tokens >= context_length:
        raise ContextLengthExceededError(
            f"The prompt is {prompt_tokens} tokens, but this model's context is "
            f"{context_length} tokens and at least one must be left to generate.",
            param="messages" if request.is_chat else "prompt",
        )
    room = context_length - prompt_tokens
    if request.max_tokens is not None and request.max_tokens < 1:
        raise InvalidRequestError(
            f"max_tokens must be at least 1, got {request.max_tokens}", param="max_tokens"
        )
    if request.max_tokens is not None and request.max_tokens > room:
        # Refused, as vLLM does, rather than cut: silently running to the context end
        # held a non-streamed request's connection for minutes.
        raise ContextLengthExceededError(
            f"This model's context is {context_length} tokens and the prompt takes "
            f"{prompt_tokens}, which leaves {room} to generate, but max_tokens asks for "
            f"{request.max_tokens}. Ask for at most {room}, or shorten the prompt.",
            param="max_tokens",
        )
    return min(room, request.max_tokens or request.default_max_tokens or room)


def replay(
    generation: Generation, groups: tuple[tuple[int, ...], ...], context_length: int
) -> list[Event]:
    """A continuation's events: each group of tokens taken as sampled ones are, then the
    group's delta (and a Finish, should they end it); the tokens are prefilled after the
    prompt. Checked against the context, since the model saw them once already.

    Raises:
        InvalidRequestError: the request asks for logprobs (see `OnnxBackend.can_continue`).
        ContextLengthExceededError: prompt and continuation leave no room to generate.
    """
    if not groups:
        return []
    if generation.top_logprobs is not None:
        raise InvalidRequestError("A request with logprobs cannot be continued.", param="logprobs")
    ids = [token for group in groups for token in group]
    if len(generation.prompt_ids) + len(ids) >= context_length:
        raise ContextLengthExceededError(
            "The continuation leaves no room in the context to generate.", param="messages"
        )
    events: list[Event] = []
    for group in groups:
        generation.replay(group)
        while True:
            try:
                item = generation.receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            if isinstance(item, TokenwireError):
                raise item
            events.append(item)
    generation.extend_prompt(ids)
    return events
