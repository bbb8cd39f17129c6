"""`CountRoute`: the ASGI app behind one dialect's token-count paths (Anthropic's
`/v1/messages/count_tokens`, Gemini's `:countTokens`). A count is not a stream: the dialect
parses the body as it parses a generation's, the backend counts the prompt, one JSON answers."""

from __future__ import annotations

import logging

from starlette.types import Receive, Scope, Send

from tokenwire.endpoint import Endpoint
from tokenwire.errors import (
    GenerationError,
    InvalidRequestError,
    MethodNotAllowedError,
    TokenwireError,
)
from tokenwire.host import BackendHost
from tokenwire.interfaces import CountsTokens, ServesTokenCounts
from tokenwire.transports._calls import read_body
from tokenwire.transports._replies import request_id_of, response_headers, send_error, send_json

logger = logging.getLogger("tokenwire")


class CountRoute:
    """Answers a dialect's token-count requests with the backend's `count_tokens`.

    A backend without that capability gets every count refused with a 400 that says so, in
    the dialect's error shape.
    """

    def __init__(self, endpoint: Endpoint, dialect: ServesTokenCounts, host: BackendHost) -> None:
        self.endpoint, self.dialect, self.host = endpoint, dialect, host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoint
        if scope["method"] != "POST":
            error = MethodNotAllowedError(
                f"{scope['method']} is not allowed here; send the request with POST."
            )
            rendered = endpoint.render_error(error)
            headers = response_headers(scope, {**rendered.headers, "allow": "POST"})
            await send_json(send, 405, rendered.content, headers)
            return
        scope["state"]["transport"] = "json"
        try:
            tokens = await self._count(scope, receive)
        except TokenwireError as error:
            await send_error(scope, send, endpoint, error)
            return
        await send_json(send, 200, self.dialect.render_count(tokens), response_headers(scope))

    async def _count(self, scope: Scope, receive: Receive) -> int:
        endpoint = self.endpoint
        body = await read_body(receive, endpoint.limits.max_body_bytes)
        document = endpoint.decode(body)
        try:
            request = self.dialect.parse_count(
                document, scope.get("path_params", {}), request_id_of(scope), endpoint.model_id
            )
        except RecursionError:
            raise InvalidRequestError("Request body is nested too deeply.") from None
        backend = self.host.backend
        if not isinstance(backend, CountsTokens):
            raise InvalidRequestError(
                f"The backend serving {endpoint.model_id!r} cannot count tokens "
                f"({type(backend).__name__} has no count_tokens).",
            )
        await self.host.ensure_started()
        try:
            return await backend.count_tokens(request)
        except TokenwireError:
            raise
        except Exception as exc:
            logger.exception("counting tokens failed (request %s)", request.request_id)
            raise GenerationError("The server failed while counting tokens.") from exc
