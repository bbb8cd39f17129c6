"""`GenerationRequest`: the one request shape every backend and middleware sees."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenwire.prompt_cache import PromptCache


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat turn. `role` is one of system, user, assistant (the dialect maps its own)."""

    role: str
    content: str


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What to generate. Exactly one of `messages` (chat) and `prompt` (raw text) is set.

    `temperature`, `top_p` and `top_k` are None when the client sent none: the backend then
    applies the server's or the model's defaults (a sent 1.0 is kept as 1.0).
    `max_tokens` is what the client asked for: a backend refuses more than the context leaves
    after the prompt. `default_max_tokens` is the server's budget for a request that names
    none: it is cut to the room left, never refused. Both None: until the context is full.
    `deadline` is an `anyio.current_time()` value after which the stream is cut short.
    `dialect` and `transport` name where the request came from (bounded metric labels),
    filled in by the endpoint. `prompt_cache` is the KV prefix cache a backend may reuse, put
    there by the `prompt_cache` middleware; it is no part of the request's value (not
    compared, not shown).
    """

    model: str
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    max_tokens: int | None = None
    default_max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    request_id: str = field(default_factory=new_request_id)
    deadline: float | None = None
    dialect: str = ""
    transport: str = ""
    prompt_cache: PromptCache | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("exactly one of messages and prompt must be set")

    @property
    def is_chat(self) -> bool:
        return self.messages is not None
