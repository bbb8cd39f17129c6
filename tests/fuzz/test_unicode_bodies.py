"""Any text a JSON body can spell, sent to every dialect over every HTTP transport.

JSON can spell what UTF-8 cannot carry: `"\\ud800"` decodes to a lone surrogate, which no
response can encode. Schemathesis draws only encodable text, so this suite sends such
escapes (and NULs, line separators, BOMs) itself. The server must answer 200 and echo the
text, or refuse it with a 400 in the dialect's shape; never fail or cut a stream short.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._support.server import running_server
from tests.fuzz._shapes import error_shape_problem
from tokenwire import create_app
from tokenwire.backends.echo import EchoBackend

MODEL = "echo"

# Whatever JSON's \u escapes can spell, lone surrogates and all.
_tricky = st.sampled_from(
    ["\ud800", "\udfff", "\ud83d", "\0", "\u2028", "\u0085", "\ufeff", "\r\n"]
)
any_text = st.lists(
    st.one_of(st.characters(exclude_categories=()), _tricky), min_size=1, max_size=12
).map("".join)


def _chat(text: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}]}


def _completion(text: str) -> dict[str, Any]:
    return {"model": MODEL, "prompt": text, "max_tokens": 100}


def _message(text: str) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": text}]}


def _gemini(text: str) -> dict[str, Any]:
    return {"contents": [{"parts": [{"text": text}]}]}


def _chat_text(document: Any) -> str:
    choice = document["choices"][0] if document.get("choices") else {}
    if "message" in choice:
        return str(choice["message"]["content"])
    return str(choice.get("delta", {}).get("content") or "")


def _completion_text(document: Any) -> str:
    return str(document["choices"][0]["text"]) if document.get("choices") else ""


def _message_text(document: Any) -> str:
    if document.get("type") == "message":
        return str(document["content"][0]["text"])
    return str(document.get("delta", {}).get("text") or "")


def _gemini_text(document: Any) -> str:
    return str(document["candidates"][0]["content"]["parts"][0]["text"])


# (path, body for a text, the text in one response document or stream payload, error shape)
DIALECTS: dict[str, tuple[str, Callable[[str], dict[str, Any]], Callable[[Any], str], str]] = {
    "openai-chat": ("/v1/chat/completions", _chat, _chat_text, "openai"),
    "openai-completions": ("/v1/completions", _completion, _completion_text, "openai"),
    "anthropic": ("/v1/messages", _message, _message_text, "anthropic"),
    "gemini": (f"/v1beta/models/{MODEL}:generateContent", _gemini, _gemini_text, "gemini"),
}


def _finished(last: str) -> bool:
    """Whether a stream's last payload is its dialect's normal end."""
    if last == "[DONE]":
        return True
    document = json.loads(last)
    if document.get("type") == "message_stop":
        return True
    choices = document.get("choices") or document.get("candidates") or [{}]
    return bool(choices[0].get("finish_reason") or choices[0].get("finishReason"))


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with running_server(create_app(EchoBackend())) as url, httpx.Client(base_url=url) as http:
        yield http


def _payloads(response: httpx.Response) -> list[str]:
    if response.headers["content-type"].startswith("application/x-ndjson"):
        return response.text.removesuffix("\n").split("\n")
    # Bare `data:` lines; each payload is one line of compact JSON (or OpenAI's [DONE]).
    return [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]


@pytest.mark.parametrize("transport", ["whole", "sse", "ndjson"])
@pytest.mark.parametrize("dialect", DIALECTS)
@settings(max_examples=25)
@given(text=any_text)
def test_any_spelled_text_is_echoed_or_refused_never_a_server_error(
    client: httpx.Client, dialect: str, transport: str, text: str
) -> None:
    path, body_of, text_of, shape = DIALECTS[dialect]
    body = body_of(text)
    headers = {"content-type": "application/json"}
    if transport != "whole":
        if dialect == "gemini":
            path = path.replace(":generateContent", ":streamGenerateContent")
        else:
            body["stream"] = True
    if transport == "ndjson":
        headers["accept"] = "application/x-ndjson"
    # json.dumps escapes every non-ASCII character, so lone surrogates travel as \udXXX.
    response = client.post(path, content=json.dumps(body), headers=headers, timeout=10)

    assert response.status_code in (200, 400), response.text[:300]
    if response.status_code == 400:
        problem = error_shape_problem(shape, 400, response.json())
        assert problem is None, problem
        return
    if transport == "whole":
        echoed = text_of(response.json())
    else:
        payloads = _payloads(response)
        assert payloads and _finished(payloads[-1]), f"the stream was cut short: {payloads[-1:]}"
        echoed = "".join(text_of(json.loads(p)) for p in payloads if p != "[DONE]")
    # The echo backend answers with the prompt: the text survived the round trip whole (as
    # JSON spells it: a surrogate pair's two escapes decode to one character).
    assert echoed == json.loads(json.dumps(text))
