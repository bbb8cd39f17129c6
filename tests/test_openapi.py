"""The OpenAPI document: valid OpenAPI 3.1, faithful to the served parts, served at /openapi.json."""

from __future__ import annotations

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Mount

from tokenwire import create_app
from tokenwire.backends.echo import EchoBackend
from tokenwire.limits import Limits
from tokenwire.openapi import build_openapi, openapi_routes


@pytest.mark.parametrize(
    "options",
    [{}, {"api_keys": True, "resume": True}, {"dialects": ["anthropic"], "metrics": False}],
)
def test_the_document_is_valid_openapi_3_1(options: dict[str, object]) -> None:
    document = build_openapi("echo", **options)  # type: ignore[arg-type]
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_only_the_served_dialects_and_routes_are_documented() -> None:
    paths = build_openapi("m", dialects=["anthropic"], cancellation=False, playground=False)[
        "paths"
    ]
    assert "/v1/messages" in paths
    assert "/v1/chat/completions" not in paths
    assert not any(":generateContent" in path for path in paths)
    assert "/v1/requests/{request_id}" not in paths and "/" not in paths


def _validator(document: dict[str, object], name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_request_schemas_admit_only_the_served_model_and_the_token_cap() -> None:
    document = build_openapi("echo", limits=Limits(max_tokens=64))
    chat = _validator(document, "ChatCompletionRequest")
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    assert chat.is_valid(body)
    assert chat.is_valid({**body, "max_tokens": 64, "stop": None, "stream": None})
    assert not chat.is_valid({**body, "max_tokens": 65})
    assert not chat.is_valid({**body, "model": "other"})
    assert not chat.is_valid({**body, "messages": []})
    # An assistant turn may have no content; a user turn may not.
    assert chat.is_valid({**body, "messages": [{"role": "assistant"}]})
    assert not chat.is_valid({**body, "messages": [{"role": "user"}]})
    anthropic = _validator(document, "MessagesRequest")
    assert not anthropic.is_valid(body)  # max_tokens is required
    assert anthropic.is_valid({**body, "max_tokens": 1})


@pytest.mark.anyio
async def test_openapi_json_is_served_and_follows_the_mount_prefix() -> None:
    app = create_app(EchoBackend(), playground=False)
    app.router.routes[:0] = openapi_routes("echo")
    host = Starlette(routes=[Mount("/llm", app)])
    for client_app, url, server in [
        (app, "/openapi.json", "/"),
        (host, "/llm/openapi.json", "/llm"),
    ]:
        transport = httpx.ASGITransport(app=client_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get(url)
        assert response.status_code == 200
        document = response.json()
        assert document["servers"] == [{"url": server}]
        assert "/v1/chat/completions" in document["paths"]
