"""Whole JSON replies over HTTP: errors in the dialect's shape, and non-streamed responses."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import Scope, Send

from tokenwire.endpoint import Endpoint
from tokenwire.errors import TokenwireError


def request_id_of(scope: Scope) -> str:
    state = scope.get("state") or {}
    request_id = state.get("request_id")
    if not isinstance(request_id, str):
        raise RuntimeError("tokenwire routes must be served by create_app (no request id)")
    return request_id


def response_headers(scope: Scope, extra: Mapping[str, str] = {}) -> list[tuple[bytes, bytes]]:
    """The headers every tokenwire response carries (its request id), plus `extra`."""
    headers = {"x-request-id": request_id_of(scope), **extra}
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_json(
    send: Send, status: int, content: object, headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(scope: Scope, send: Send, endpoint: Endpoint, error: TokenwireError) -> None:
    """Answer with `error` in the shape of `endpoint`'s dialect, with its status."""
    rendered = endpoint.render_error(error)
    await send_json(
        send, rendered.status_code, rendered.content, response_headers(scope, rendered.headers)
    )
