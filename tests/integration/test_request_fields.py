"""Request fields a real model must answer for over HTTP: seeds at the API's bounds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.server import running_server
from tests.backends.onnx.tiny_models import write_model_dir
from tokenwire import create_app
from tokenwire.backends.onnx import OnnxBackend

MODEL = "tiny-llama-shared"
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
