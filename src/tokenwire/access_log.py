"""`AccessLog`: every request gets an id, an `x-request-id` header and one access-log line.

Outermost in tokenwire's stack, so that 404s, health probes and `/v1/models` are logged and
tagged like the dialect routes. The id is the client's `x-request-id` when it is a safe token,
else a new one; routes read it from `scope["state"]["request_id"]` and may replace it (a
resumed stream keeps the id of the stream it continues). The line names no body and no
prompt; `scope["state"]["transport"]` names how the response went out, when a route says.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenwire.logs import request_id_var
from tokenwire.requests import new_request_id

logger = logging.getLogger("tokenwire.access")

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(scope: Scope) -> str:
    """The client's `x-request-id` when it is a safe token (it reaches logs), else a new id."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _CLIENT_REQUEST_ID.fullmatch(candidate):
                return candidate
    return new_request_id()


class AccessLog:
    """Tags and logs every HTTP and WebSocket request that reaches `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["request_id"] = request_id_from(scope)
        state["received_at"] = started = time.perf_counter()
        request_id_var.set(state["request_id"])
        status = 0

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if not any(name == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", state["request_id"].encode("latin-1")))
                    message = {**message, "headers": headers}
            elif message["type"] == "websocket.accept":
                status = 101
            await send(message)

        try:
            await self.app(scope, receive, tagged_send)
        finally:
            request_id_var.set(state["request_id"])
            transport = state.get("transport")
            logger.info(
                "%s %s %s%s in %.1f ms",
                scope.get("method", "WS"),
                scope["path"],
                status or "-",
                f" via {transport}" if transport else "",
                (time.perf_counter() - started) * 1000,
                extra={"request_id": state["request_id"]},
            )
