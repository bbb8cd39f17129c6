"""The access log: one line per request on every tokenwire route, under the request's id."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tokenwire import TokenwireMiddleware, create_app
from tokenwire.backends.echo import EchoBackend

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}


def access_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (getattr(r, "request_id", "-"), r.getMessage())
        for r in caplog.records
        if r.name == "tokenwire.access"
    ]


@pytest.mark.anyio
async def test_every_route_is_logged_and_tagged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tokenwire.access")
    app = create_app(EchoBackend())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        for path in ("/v1/models", "/nowhere"):
            reply = await client.get(path, headers={"x-request-id": f"id{len(path)}"})
            assert reply.headers["x-request-id"] == f"id{len(path)}"
        whole = await client.post("/v1/chat/completions", json=CHAT)
        streamed = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    lines = access_lines(caplog)
    assert [rid for rid, _ in lines[:2]] == ["id10", "id8"]
    messages = [message for _, message in lines]
    assert messages[0].startswith("GET /v1/models 200")
    assert messages[1].startswith("GET /nowhere 404")
    assert messages[2].startswith("POST /v1/chat/completions 200 via json")
    assert messages[3].startswith("POST /v1/chat/completions 200 via sse")
    assert whole.status_code == streamed.status_code == 200


@pytest.mark.anyio
async def test_a_mounted_middleware_leaves_the_host_apps_paths_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tokenwire.access")

    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("host")

    host = Starlette(routes=[Route("/home", home)])
    app = TokenwireMiddleware(host, backend=EchoBackend())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        reply = await client.get("/home")
        models = await client.get("/v1/models")
    assert reply.text == "host" and "x-request-id" not in reply.headers
    assert "x-request-id" in models.headers
    assert [m for _, m in access_lines(caplog) if "/home" in m] == []
