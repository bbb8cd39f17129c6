from collections.abc import Iterator

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
