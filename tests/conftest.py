import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests._support.server import running_server
from tokenwire import create_app
from tokenwire.backends.echo import EchoBackend


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def echo_url() -> Iterator[str]:
    """A real uvicorn serving the echo backend on 127.0.0.1."""
    with running_server(create_app(EchoBackend())) as url:
        yield url


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct, prepared as builder int8 once and cached between runs."""
    from tokenwire.backends.onnx.manifest import DEFAULT_MODEL_NAME
    from tokenwire.prepare import PrepareOptions, prepare_model

    directory = Path(
        os.environ.get("TOKENWIRE_TEST_MODEL_DIR")
        or REPO / ".cache" / "models" / DEFAULT_MODEL_NAME
    )
    return prepare_model(PrepareOptions(output=directory), stream=io.StringIO()).directory


_Client = TypeVar("_Client")
CloseAfter = Callable[[_Client], _Client]


@pytest.fixture
def close_after() -> Iterator[CloseAfter]:  # type: ignore[type-var]
    """`close_after(client)` closes `client` when the test ends: SDK clients keep pooled
    sockets open, and one left for the garbage collector warns inside a later test."""
    opened: list[Any] = []

    def register(client: _Client) -> _Client:
        opened.append(client)
        return client

    yield register
    for client in opened:
        client.close()
