"""Constrained decoding: an llguidance grammar per request, and one matcher per sequence.

A request's `constraint` (JSON Schema, any JSON object, a regex or a Lark grammar), its
forced tool calls (`tool_choice` "required" or a named tool) and its `strict` tools under
"auto" become one llguidance grammar.
Each sequence's `TokenConstraint` masks its logits row before sampling and consumes the
sampled token; when the grammar is complete and only EOS may follow, the sequence stops.
Tokens the grammar forces (`forced`: JSON keys, punctuation, a tool call's fixed markup)
can be fed without sampling them (grammar fast-forward, see `speculation`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import llguidance
import numpy as np
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from tokenwire.errors import GenerationError, InvalidRequestError
from tokenwire.requests import GenerationRequest, OutputConstraint, Tool

# Hermes tool-call markup, as the tool-call parser middleware reads it back.
TOOL_CALL_OPEN = "<tool_call>\n"
TOOL_CALL_CLOSE = "\n</tool_call>"
# What the parser takes for the start of a call: text under "auto" must never contain it.
TOOL_CALL_MARK = TOOL_CALL_OPEN.rstrip("\n")

# JSON may break lines and indent, but no whitespace run is longer than this: a small model
# under a mask otherwise can write whitespace until max_tokens (a known failure of
# constrained JSON). A schema's own "x-guidance" options override it.
JSON_WHITESPACE = r"[\x20\x0A\x0D\x09]{0,24}"
JSON_OPTIONS: dict[str, Any] = {"whitespace_pattern": JSON_WHITESPACE}
# A forced call is written as the prompt's example shows it (and as `json.dumps` writes):
# one line, ", " and ": ".
CALL_OPTIONS: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}


class ConstraintCompiler:
    """Builds llguidance grammars for one model's tokenizer.

    `eos_token_id` is the token that ends the model's turn (SmolLM2's `<|im_end|>`), not the
    tokenizer's default `<|endoftext|>`: a finished grammar allows only it.
    """

    def __init__(self, tokenizer_json: str, eos_token_id: int) -> None:
        self.tokenizer = llguidance.LLTokenizer(tokenizer_json, eos_token=eos_token_id)

    def grammar(self, request: GenerationRequest) -> tuple[str, str] | None:
        """The grammar `request` decodes under and the field it comes from, or None.

        Forced tool calls take precedence over `constraint`: the constraint shapes an answer,
        and a turn that must call tools has none (OpenAI behaves the same). Under "auto", a
        `constraint` still wins; without one, any `strict` tool constrains the turn to text or
        calls (`text_or_tool_calls_lark`), and without strict tools it is free.

        Raises:
            InvalidRequestError: `tool_choice` names no tool the request offers.
        """
        choice = request.tool_choice
        if choice.mode == "required":
            tools = select_tools(request.tools, choice.names)
            lark = tool_calls_lark(tools, parallel=request.parallel_tool_calls)
            return json.dumps({"grammars": [{"lark_grammar": lark}]}), "tools"
        if request.constraint is not None:
            return json.dumps({"grammars": [_answer_grammar(request.constraint)]}), (
                "response_format"
            )
        if choice.mode == "auto" and any(tool.strict for tool in request.tools):
            lark = text_or_tool_calls_lark(request.tools, parallel=request.parallel_tool_calls)
            return json.dumps({"grammars": [{"lark_grammar": lark}]}), "tools"
        return None

    def matcher(self, grammar: str, param: str) -> TokenConstraint:
        """A fresh matcher for one sequence (compiling may take a while: call off the loop).

        Raises:
            InvalidRequestError: the grammar does not compile; the message names `param`.
        """
        matcher = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise InvalidRequestError(
                f"Invalid {param}: {_first_line(matcher.get_error())}", param=param
            )
        return TokenConstraint(matcher, self.tokenizer.vocab_size)


class TokenConstraint:
    """One sequence's matcher: `apply` masks a logits row, `consume` takes the sampled token.

    Used only from the decode worker thread, one call at a time. `mask_seconds` keeps how
    long each mask took (the benchmark reads it).
    """

    __slots__ = ("_bitmask", "mask_seconds", "matcher", "vocab")

    def __init__(self, matcher: llguidance.LLMatcher, vocab: int) -> None:
        self.matcher = matcher
        self.vocab = vocab
        self._bitmask = allocate_token_bitmask(1, vocab)
        self.mask_seconds: list[float] = []

    def allowed(self) -> np.ndarray:
        """The tokens the grammar allows next, as a boolean array over the vocabulary."""
        started = time.perf_counter()
        fill_next_token_bitmask(self.matcher, self._bitmask, 0)
        bits = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")[: self.vocab]
        self.mask_seconds.append(time.perf_counter() - started)
        return bits.astype(bool)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """`logits` with every token the grammar forbids at -inf (a new array: the runner's
        buffer is left alone)."""
        allowed = self.allowed()
        if logits.shape[-1] > self.vocab:  # padded model vocabularies: the padding is never valid
            allowed = np.concatenate([allowed, np.zeros(logits.shape[-1] - self.vocab, bool)])
        return np.where(allowed[: logits.shape[-1]], logits, np.float32(-np.inf))

    def consume(self, token_id: int) -> None:
        """Advance past the sampled token.

        Raises:
            GenerationError: the grammar rejected it (cannot happen for a masked sample).
        """
        if not self.matcher.consume_token(token_id):
            raise GenerationError(
                f"The output constraint rejected token {token_id}: "
                f"{_first_line(self.matcher.get_error())}"
            )

    def forced(self) -> list[int]:
        """The tokens the grammar forces next, whatever the model would say (llguidance's
        fast-forward tokens: its canonical tokenization of the forced bytes, holding back a
        last token that further bytes could still extend); empty when nothing is forced."""
        if self.matcher.is_stopped():
            return []
        return self.matcher.compute_ff_tokens()

    @property
    def finished(self) -> bool:
        """Whether the grammar is complete and nothing but EOS may follow."""
        return self.matcher.is_stopped()


def select_tools(tools: Sequence[Tool], names: Sequence[str]) -> tuple[Tool, ...]:
    """The tools a forced call may use: those `names` picks, or all of them.

    Raises:
        InvalidRequestError: there are no tools, or a name is not among them.
    """
    if not tools:
        raise InvalidRequestError(
            "tool_choice requires a tool call, but the request has no tools.", param="tool_choice"
        )
    if not names:
        return tuple(tools)
    known = {tool.name: tool for tool in tools}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidRequestError(
            f"tool_choice names {unknown[0]!r}, which is not among the request's tools "
            f"({', '.join(sorted(known))}).",
            param="tool_choice",
        )
    return tuple(known[name] for name in dict.fromkeys(names))


def tool_calls_lark(tools: Sequence[Tool], *, parallel: bool) -> str:
    """A Lark grammar for one (or, when `parallel`, one or more) Hermes `<tool_call>` blocks,
    each `{"name": <one of tools>, "arguments": <valid under its parameters>}`."""
    calls = 'call ("\\n" call)*' if parallel else "call"
    call = f"call: {json.dumps(TOOL_CALL_OPEN)} body"
    return "\n".join([f"start: {calls}", call, *_call_rules(tools, only_strict=False)])


def text_or_tool_calls_lark(tools: Sequence[Tool], *, parallel: bool) -> str:
    """A Lark grammar for "auto": text that never contains `<tool_call>`, then optionally one
    (or, when `parallel`, one or more) Hermes blocks, EOS after the text or the last block.

    A block's arguments are valid under the tool's parameters if the tool is `strict`, else
    any JSON object. `TEXT` excludes the mark with llguidance's `~`; the text before the
    first call is `TEXT` then the opener, one lexeme, so it ends at the first mark and the
    mark is always a call's start. (Two lexemes `TEXT "<tool_call>\\n"` would not do: the
    lexer does not back up out of a `TEXT` that already took "<tool_call"; and a lazy
    `/(?s:.*)<tool_call>\\n/` would let "<tool_call>" without the newline into the text.)
    """
    mark = re.escape(TOOL_CALL_MARK)  # TOOL_CALL_OPEN is the mark and a newline
    calls = f"body ({json.dumps(chr(10) + TOOL_CALL_OPEN)} body)*" if parallel else "body"
    return "\n".join(
        [
            f"start: TEXT | TEXT_AND_OPENER {calls}",
            f"TEXT: /(?s:.*)/ & ~/(?s:.*){mark}(?s:.*)/",
            f"TEXT_AND_OPENER: TEXT {json.dumps(TOOL_CALL_OPEN)}",
            *_call_rules(tools, only_strict=True),
        ]
    )


def _call_rules(tools: Sequence[Tool], *, only_strict: bool) -> list[str]:
    """`body`: one call's JSON and the block's close. Arguments follow the tool's parameters,
    or, with `only_strict` and a tool not marked strict, are any JSON object."""
    rules = []
    for index, tool in enumerate(tools):
        strict = tool.strict or not only_strict
        arguments = _plain(tool.parameters) if strict else {"type": "object"}
        schema = {
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": arguments},
            "required": ["name", "arguments"],
            "additionalProperties": False,
            "x-guidance": CALL_OPTIONS,
        }
        rules.append(f"call_{index}: %json {json.dumps(schema)}")
    names = " | ".join(f"call_{index}" for index in range(len(tools)))
    return [f"body: ({names}) {json.dumps(TOOL_CALL_CLOSE)}", *rules]


def _answer_grammar(constraint: OutputConstraint) -> dict[str, Any]:
    if constraint.kind == "json_object":
        return {"json_schema": {"type": "object", "x-guidance": JSON_OPTIONS}}
    if constraint.kind == "json_schema":
        if not isinstance(constraint.schema, Mapping):
            raise InvalidRequestError(
                "A json_schema response_format needs a schema.", param="response_format"
            )
        return {"json_schema": {"x-guidance": JSON_OPTIONS, **_plain(constraint.schema)}}
    if not constraint.pattern:
        raise InvalidRequestError(
            f"A {constraint.kind} response_format needs a pattern.", param="response_format"
        )
    if constraint.kind == "regex":
        grammar: dict[str, Any] = json.loads(
            llguidance.LLMatcher.grammar_from_regex(constraint.pattern)
        )["grammars"][0]
        return grammar
    return {"lark_grammar": constraint.pattern}


def _plain(value: Any) -> Any:
    """A JSON value as plain dicts and lists (requests hold read-only mappings)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "it does not compile"
