"""`GenerationRequest`: the one request shape every backend and middleware sees."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tokenwire.prompt_cache import PromptCache


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the assistant made in an earlier turn: `arguments` is its JSON object text."""

    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat turn. `role` is one of system, user, assistant, tool (the dialect maps its own).

    An assistant turn may carry `tool_calls` (its `content` may then be empty); a tool turn is
    the result of the call `tool_call_id`, of the tool `name` when the dialect says it.
    """

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its `parameters` are a JSON Schema (an object's).

    `strict` asks that the call's arguments be valid under the schema (a backend that can
    constrain its output guarantees it).
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    strict: bool = False


ToolChoiceMode = Literal["auto", "none", "required"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether the model may call tools ("auto"), must not ("none"), or must ("required").

    With "required", `names` limits the call to those tools (one name: exactly that tool).
    """

    mode: ToolChoiceMode = "auto"
    names: tuple[str, ...] = ()


ConstraintKind = Literal["json_object", "json_schema", "regex", "grammar"]


@dataclass(frozen=True, slots=True)
class OutputConstraint:
    """What the answer must be: any JSON object, JSON valid under `schema`, text matching the
    regex `pattern`, or text in the Lark grammar `pattern` ("grammar"). `name` is the schema's
    name where the dialect gives one."""

    kind: ConstraintKind
    schema: Mapping[str, Any] | None = None
    pattern: str | None = None
    name: str | None = None


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
    filled in by the endpoint.

    Agent requests: `tools` the model may call under `tool_choice`, and whether it may make
    several calls in one turn (`parallel_tool_calls`); `constraint` on the answer's shape;
    `logprobs` (and `top_logprobs` alternatives, 0-20) per generated token; `reasoning` asks a
    model that can think before answering to do so (None: the model's own default).
    A backend refuses (with an error naming the field) what it cannot do.

    `continuation` holds the token ids a replica that died had already generated for this
    request, grouped as the events that carried them: a backend that `ContinuesGeneration`
    replays them as those same events (prefilled, not sampled) and then generates on; empty
    for every ordinary request (see docs/resume.md, "Failover").

    `prompt_cache` is the KV prefix cache a backend may reuse, put
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
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = ToolChoice()
    parallel_tool_calls: bool = True
    constraint: OutputConstraint | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    reasoning: bool | None = None
    continuation: tuple[tuple[int, ...], ...] = ()
    prompt_cache: PromptCache | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("exactly one of messages and prompt must be set")

    @property
    def is_chat(self) -> bool:
        return self.messages is not None
