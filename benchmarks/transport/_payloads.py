"""The workload every server streams: one chat request and its pre-rendered SSE events.

The events are rendered by tokenwire's own OpenAI chat dialect and SSE encoder from the echo
backend's output, so the comparison servers send byte-for-byte what tokenwire sends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import anyio

from tokenwire.backends.echo import EchoBackend
from tokenwire.dialects.openai_chat import OpenAIChatDialect
from tokenwire.transports.sse import encode_event

# Same length as tokenwire's `req_<uuid4 hex>`, so the `id:` lines weigh the same.
REQUEST_ID = "req_" + "0" * 32
PATH = "/v1/chat/completions"
# Varied words of varied length, so the payloads look like text rather than one repeated token.
_TEXT = (
    "the quick brown fox jumps over a lazy dog while streaming tokens to every client "
    "as soon as the model produces them without buffering anything at all"
)
_VOCABULARY = _TEXT.split()


def prompt_text(words: int) -> str:
    """A deterministic prompt of `words` words; the echo backend streams one token per word."""
    return " ".join(_VOCABULARY[i % len(_VOCABULARY)] for i in range(words))


def request_body(words: int) -> bytes:
    """The chat completion request every client sends (`max_tokens` unset: all words stream)."""
    document = {
        "model": "echo",
        "stream": True,
        "messages": [{"role": "user", "content": prompt_text(words)}],
    }
    return json.dumps(document).encode()


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One pre-rendered event: its `id`, its `data` (JSON text) and the exact wire bytes."""

    id: str
    data: str
    wire: bytes


def rendered_events(words: int) -> list[SSEEvent]:
    """The events tokenwire's SSE transport sends for `request_body(words)`, in order."""
    return anyio.run(render_events, words)


async def render_events(words: int) -> list[SSEEvent]:
    """`rendered_events`, for callers already inside an event loop."""
    dialect = OpenAIChatDialect()
    exchange = dialect.parse(json.loads(request_body(words)), {}, REQUEST_ID, "echo")
    payloads = list(exchange.open())
    async for event in EchoBackend().generate(exchange.request):
        payloads.extend(exchange.render(event))
    events = []
    for sequence, payload in enumerate(payloads):
        event_id = f"{REQUEST_ID}:{sequence}"
        wire = encode_event(payload.data, event=payload.event, id=event_id)
        events.append(SSEEvent(event_id, payload.data, wire))
    return events
