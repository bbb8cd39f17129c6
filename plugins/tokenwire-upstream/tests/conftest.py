from __future__ import annotations

from collections.abc import Iterator

import pytest
from upstream_support import running_server

from tokenwire import create_app
from tokenwire.backends.echo import EchoBackend


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[str]:
    """A real tokenwire echo server on 127.0.0.1, the upstream most tests proxy to."""
    with running_server(create_app(EchoBackend(model="echo"))) as url:
        yield url
