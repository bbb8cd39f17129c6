"""`AgentFields`: what a request asks of the model beside its prompt and sampling, as every
dialect reads it from its own fields (tools, tool choice, structured output, logprobs,
reasoning)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from tokenwire.requests import OutputConstraint, Tool, ToolChoice


@dataclass(frozen=True, slots=True)
class AgentFields:
    """The agent fields of one request, validated; named and defaulted as `GenerationRequest`
    names them, so a dialect passes them on whole (`request_fields`)."""

    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = ToolChoice()
    parallel_tool_calls: bool = True
    constraint: OutputConstraint | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    reasoning: bool | None = None

    def request_fields(self) -> dict[str, Any]:
        """These fields as `GenerationRequest` keyword arguments."""
        return {field.name: getattr(self, field.name) for field in fields(self)}
