"""Serve a dialect to the official SDKs in-process: an httpx transport that runs the real
`Endpoint` over scripted events and frames the payloads as SSE, as the server would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx
from starlette.routing import compile_path

from tokenwire.endpoint import Endpoint
from tokenwire.errors import TokenwireError
from tokenwire.events import Event
from tokenwire.interfaces import Dialect
from tokenwire.requests import GenerationRequest
from tokenwire.transports.sse import encode_event

MODEL = "tw-model"
BASE_URL = "http://tokenwire.test"


@dataclass
class ScriptedServer:
    """Answers every request with `events`; records the requests the dialect parsed."""

    dialect: Dialect
    events: Sequence[Event]
    requests: list[GenerationRequest] = field(default_factory=list)
    bodies: list[dict[str, object]] = field(default_factory=list)
    raw_streams: list[bytes] = field(default_factory=list)

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self.requests.append(request)
        for event in self.events:
            yield event

    def _path_params(self, path: str) -> dict[str, str]:
        for route in self.dialect.routes:
            regex, _, convertors = compile_path(route)
            match = regex.match(path)
            if match:
                return {k: convertors[k].convert(v) for k, v in match.groupdict().items()}
        raise AssertionError(f"no route of {self.dialect.name} matches {path}")

    async def handle(self, request: Any, http: ModuleType) -> Any:
        endpoint = Endpoint(self.dialect, self._generate, MODEL)
        body = await request.aread()
        self.bodies.append(json.loads(body))
        try:
            call = endpoint.start(body, self._path_params(request.url.path), "req_0123abcd")
            if not call.stream:
                return http.Response(200, json=dict(await call.respond()))
            frames = [
                encode_event(p.data, event=p.event if self.dialect.sse_fields else None)
                async for p in call.payloads()
            ]
        except TokenwireError as error:
            rendered = endpoint.render_error(error)
            return http.Response(
                rendered.status_code, json=dict(rendered.content), headers=dict(rendered.headers)
            )
        raw = b"".join(frames)
        self.raw_streams.append(raw)
        return http.Response(200, content=raw, headers={"content-type": "text/event-stream"})

    def client(self, http: ModuleType = httpx) -> Any:
        """An async client of `http` (httpx, or httpx2 for SDKs built on it) that calls us."""

        async def handle(request: Any) -> Any:
            return await self.handle(request, http)

        return http.AsyncClient(transport=http.MockTransport(handle), base_url=BASE_URL)
