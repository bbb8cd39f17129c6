from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tokenwire import Event, Finish, Generate, GenerationRequest, TokenDelta, Usage, build_pipeline


async def inner(request: GenerationRequest) -> AsyncIterator[Event]:
    yield TokenDelta(f"<{request.prompt}>")
    yield Finish("stop", Usage(1, 1))


class Tag:
    """Rewrites the request on the way down and the events on the way up."""

    def __init__(self, app: Generate, *, name: str) -> None:
        self.app, self.name = app, name

    async def __call__(self, request: GenerationRequest) -> AsyncIterator[Event]:
        request = replace(request, prompt=f"{request.prompt}{self.name}")
        async for event in self.app(request):
            if isinstance(event, TokenDelta):
                event = TokenDelta(f"{self.name}({event.text})")
            yield event


@pytest.mark.anyio
async def test_first_middleware_is_outermost() -> None:
    from functools import partial

    app = build_pipeline(inner, [partial(Tag, name="a"), partial(Tag, name="b")])
    events = [e async for e in app(GenerationRequest(model="m", prompt="p"))]
    # "a" saw the request first (so "b" appended after it) and the events last.
    assert events[0] == TokenDelta("a(b(<pab>))")
    assert isinstance(events[-1], Finish)


@pytest.mark.anyio
async def test_empty_pipeline_is_the_backend_itself() -> None:
    assert build_pipeline(inner, []) is inner
