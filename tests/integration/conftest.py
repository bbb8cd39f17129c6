from collections.abc import Iterator

import pytest

from tests._support.backends import ScriptedBackend
from tests._support.server import running_server
from tokenwire import create_app


@pytest.fixture
def slow_backend() -> ScriptedBackend:
    return ScriptedBackend([f" w{i}" for i in range(400)], delay=0.01)


@pytest.fixture
def slow_url(slow_backend: ScriptedBackend) -> Iterator[str]:
    with running_server(create_app(slow_backend)) as url:
        yield url
