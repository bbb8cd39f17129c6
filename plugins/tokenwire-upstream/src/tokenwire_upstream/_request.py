"""The upstream request: a `GenerationRequest` as an OpenAI chat or completions body."""

from __future__ import annotations

from typing import Any, Literal

from tokenwire import (
    ChatMessage,
    GenerationRequest,
    InvalidRequestError,
    OutputConstraint,
    Tool,
)

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"

ServerKind = Literal["generic", "vllm", "openai"]
SERVER_KINDS: tuple[ServerKind, ...] = ("generic", "vllm", "openai")
"""What the upstream is, for the fields OpenAI's API has no common spelling for."""


def request_body(
    request: GenerationRequest, model: str, server: ServerKind = "generic"
) -> tuple[str, dict[str, Any]]:
    """The upstream path and JSON body for `request`, sent to the upstream model `model`.

    Raises:
        InvalidRequestError: the request asks for what the upstream `server` cannot do.
    """
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        # Without this the upstream sends no token counts at all.
        "stream_options": {"include_usage": True},
    }
    # Only what the client sent: an omitted field leaves the upstream its model's defaults.
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.messages is not None:
        path = CHAT_PATH
        body["messages"] = [_message(m, server) for m in request.messages]
        _add_tools(body, request)
    else:
        path = COMPLETIONS_PATH
        body["prompt"] = request.prompt
        if request.tools:
            raise InvalidRequestError(
                "Tools need a chat request: the upstream's /v1/completions has none.",
                param="tools",
            )
    if request.max_tokens is not None:
        # `max_tokens`, not the newer `max_completion_tokens`: llama.cpp and older vLLM
        # know only this one, and OpenAI still accepts it.
        body["max_tokens"] = request.max_tokens
    if request.seed is not None:
        body["seed"] = request.seed
    if request.stop:
        body["stop"] = list(request.stop)
    if request.top_k:
        # Not an OpenAI field; vLLM and llama.cpp read it as an extra. 0 means "off", and
        # strict servers reject unknown fields, so it is sent only when set.
        body["top_k"] = request.top_k
    if request.constraint is not None:
        _add_constraint(body, request.constraint, server)
    if request.logprobs:
        if request.is_chat:
            body["logprobs"] = True
            if request.top_logprobs:
                body["top_logprobs"] = request.top_logprobs
        else:
            # The legacy endpoint takes the number of alternatives in `logprobs` itself.
            body["logprobs"] = request.top_logprobs
    if request.reasoning is not None:
        _add_reasoning(body, request, server)
    return path, body


def _message(message: ChatMessage, server: ServerKind) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
        if not message.content:
            # OpenAI's spelling of an assistant turn that only calls tools.
            out["content"] = None
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    # OpenAI's tool message has no `name`; open servers' chat templates may read it.
    if message.name is not None and not (message.role == "tool" and server == "openai"):
        out["name"] = message.name
    return out


def _add_tools(body: dict[str, Any], request: GenerationRequest) -> None:
    if not request.tools:
        return
    choice = request.tool_choice
    tools = request.tools
    if choice.names:
        unknown = sorted(set(choice.names) - {t.name for t in tools})
        if unknown:
            raise InvalidRequestError(
                f"tool_choice names {', '.join(map(repr, unknown))}, which is not among the "
                f"tools offered ({', '.join(repr(t.name) for t in tools)}).",
                param="tool_choice",
            )
    named = choice.mode == "required" and len(choice.names) == 1
    if choice.names and not named:
        # Several allowed tools: offer only those. vLLM has no `allowed_tools` choice, and
        # a shorter list means the same to every server. One tool is named outright below.
        tools = tuple(t for t in tools if t.name in choice.names)
    body["tools"] = [_tool(t) for t in tools]
    if choice.mode == "none":
        body["tool_choice"] = "none"
    elif choice.mode == "required":
        if named:
            body["tool_choice"] = {"type": "function", "function": {"name": choice.names[0]}}
        else:
            body["tool_choice"] = "required"
    # "auto" is every server's default once tools are sent, so it is not spelled out.
    if not request.parallel_tool_calls:
        # Only the non-default: OpenAI's reasoning models reject the field altogether.
        body["parallel_tool_calls"] = False


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = dict(tool.parameters)
    if tool.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _add_constraint(body: dict[str, Any], constraint: OutputConstraint, server: ServerKind) -> None:
    if constraint.kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif constraint.kind == "json_schema":
        if constraint.schema is None:
            raise InvalidRequestError(
                "A json_schema response format needs a schema.", param="response_format"
            )
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": constraint.name or "response",
                "schema": dict(constraint.schema),
                "strict": True,
            },
        }
    elif server == "vllm":
        # vLLM's extra field; the `guided_regex`/`guided_grammar` it replaced were removed
        # in 0.12 and are now ignored with a 200. Its xgrammar backend converts Lark.
        key = "regex" if constraint.kind == "regex" else "grammar"
        body["structured_outputs"] = {key: constraint.pattern or ""}
    else:
        # Dropping it would return unconstrained text as if it were constrained.
        raise InvalidRequestError(
            f"A {constraint.kind} response format needs an upstream that supports it; this "
            f"server's upstream is configured as {server!r} (only 'vllm' takes regex and "
            "grammar constraints). Use json_object or json_schema.",
            param="response_format",
        )


def _add_reasoning(body: dict[str, Any], request: GenerationRequest, server: ServerKind) -> None:
    if not request.is_chat:
        raise InvalidRequestError(
            "Reasoning can be switched only for chat requests: a raw prompt has no chat "
            "template to switch it in.",
            param="reasoning",
        )
    on = bool(request.reasoning)
    if server == "openai":
        body["reasoning_effort"] = "medium" if on else "minimal"
    else:
        # Read by the model's chat template, on vLLM, SGLang and llama.cpp alike: Qwen3 and
        # Gemma name the switch `enable_thinking`, DeepSeek-V3.1 and Granite `thinking`;
        # a template ignores the one it does not use.
        body["chat_template_kwargs"] = {"enable_thinking": on, "thinking": on}
