"""Request fields a real model must answer for over HTTP: seeds at the API's bounds, and
`max_tokens` beyond what the context leaves, refused with a 400 in each dialect's shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.server import running_server
from tests.backends.onnx.tiny_models import TinyConfig, write_model_dir
from tests.fuzz._shapes import error_shape_problem
from tokenwire import create_app
from tokenwire.backends.onnx import OnnxBackend
from tokenwire.limits import Limits

MODEL = "tiny-llama-shared"
CONTEXT = TinyConfig().max_context
MESSAGES = [{"role": "user", "content": "Once upon a time there was a tiny robot"}]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = write_model_dir(tmp_path_factory.mktemp("tiny") / "shared", "shared")
    with running_server(create_app(OnnxBackend(Path(model)))) as base:
        yield base


def chat(url: str, **fields: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 6, **fields}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize("seed", [-(2**63), -1, 0, 2**63 - 1, 2**64 - 1])
def test_every_seed_openai_accepts_samples_and_the_same_seed_repeats(url: str, seed: int) -> None:
    first = chat(url, seed=seed, temperature=1.0)
    assert first.status_code == 200, first.text
    again = chat(url, seed=seed, temperature=1.0)
    assert again.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]


@pytest.mark.parametrize("seed", [-(2**63) - 1, 2**64, 1.5, "7"])
def test_a_seed_outside_the_api_range_is_a_400_naming_seed(url: str, seed: object) -> None:
    response = chat(url, seed=seed)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "seed"


TOO_MANY = 100_000


def _openai_chat(stream: bool) -> tuple[str, dict[str, Any]]:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": TOO_MANY, "stream": stream}
    return "/v1/chat/completions", body


def _openai_completions(stream: bool) -> tuple[str, dict[str, Any]]:
    body = {"model": MODEL, "prompt": MESSAGES[0]["content"], "max_tokens": TOO_MANY}
    return "/v1/completions", {**body, "stream": stream}


def _anthropic(stream: bool) -> tuple[str, dict[str, Any]]:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": TOO_MANY, "stream": stream}
    return "/v1/messages", body


def _gemini(stream: bool) -> tuple[str, dict[str, Any]]:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {
        "contents": [{"role": "user", "parts": [{"text": MESSAGES[0]["content"]}]}],
        "generationConfig": {"maxOutputTokens": TOO_MANY},
    }
    return f"/v1beta/models/{MODEL}:{method}", body


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    ("dialect", "make"),
    [
        ("openai", _openai_chat),
        ("openai", _openai_completions),
        ("anthropic", _anthropic),
        ("gemini", _gemini),
    ],
    ids=["chat", "completions", "anthropic", "gemini"],
)
def test_max_tokens_beyond_the_context_is_a_400_with_the_counts(
    url: str, dialect: str, make: Any, stream: bool
) -> None:
    path, body = make(stream)
    response = httpx.post(f"{url}{path}", json=body, timeout=30)
    assert response.status_code == 400, response.text[:300]
    document = response.json()
    assert error_shape_problem(dialect, 400, document) is None, document
    message = document["error"]["message"]
    assert f"{CONTEXT} tokens" in message and f"{TOO_MANY}" in message, message
    assert "prompt" in message


def test_max_tokens_that_fits_the_room_left_is_served(url: str) -> None:
    response = chat(url, max_tokens=CONTEXT // 2, temperature=0)
    assert response.status_code == 200, response.text


def test_a_server_budget_beyond_the_context_is_cut_not_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The budget of requests that name no max_tokens (`tokenwire serve`'s 4096 by default)
    # is larger than this context: it must not turn every such request into a 400.
    model = write_model_dir(tmp_path_factory.mktemp("tiny") / "shared", "shared")
    app = create_app(OnnxBackend(Path(model)), limits=Limits(max_tokens=CONTEXT * 4))
    with running_server(app) as base:
        body = {"model": MODEL, "messages": MESSAGES, "temperature": 0}
        response = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30)
        refused = httpx.post(
            f"{base}/v1/chat/completions", json={**body, "max_tokens": CONTEXT}, timeout=30
        )
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["total_tokens"] <= CONTEXT
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "max_tokens"
