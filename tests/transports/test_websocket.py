import json
from typing import Any

import anyio
import pytest
from starlette.types import Message

from tests._support.backends import ScriptedBackend
from tests._support.dialect import PlainDialect
from tokenwire import create_app

pytestmark = pytest.mark.anyio


class Client:
    """A scripted WebSocket client: queue frames in, collect frames out."""

    def __init__(self) -> None:
        self.to_server, self.inbox = anyio.create_memory_object_stream[Message](16)
        self.from_server, self.outbox = anyio.create_memory_object_stream[Message](256)

    def close(self) -> None:
        for stream in (self.to_server, self.inbox, self.from_server, self.outbox):
            stream.close()

    async def receive(self) -> Message:
        return await self.inbox.receive()

    async def send(self, message: Message) -> None:
        await self.from_server.send(message)

    async def frame(self) -> Any:
        with anyio.fail_after(5):
            message = await self.outbox.receive()
        assert message["type"] == "websocket.send", message
        text = message["text"]
        return text if text == "[END]" else json.loads(text)

    async def until(self, predicate) -> list[Any]:  # type: ignore[no-untyped-def]
        frames = []
        while True:
            frames.append(await self.frame())
            if predicate(frames[-1]):
                return frames


def scope() -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": "/plain",
        "raw_path": b"/plain",
        "headers": [],
        "query_string": b"",
        "root_path": "",
        "scheme": "ws",
        "subprotocols": [],
    }


async def test_requests_follow_one_another_on_one_socket(request: pytest.FixtureRequest) -> None:
    app = create_app(ScriptedBackend(["a", " b"]), dialects=[PlainDialect()])
    client = Client()
    request.addfinalizer(client.close)
    async with anyio.create_task_group() as tg:
        tg.start_soon(app, scope(), client.receive, client.send)
        await client.to_server.send({"type": "websocket.connect"})
        assert (await client.outbox.receive())["type"] == "websocket.accept"
        for _ in range(2):
            await client.to_server.send(
                {"type": "websocket.receive", "text": json.dumps({"prompt": "x"})}
            )
            frames = await client.until(lambda f: f == "[END]")
            assert [f["type"] for f in frames[:-1]] == ["open", "delta", "delta", "finish"]
        # Bad input answers with an error frame and the socket stays usable.
        await client.to_server.send({"type": "websocket.receive", "text": "{oops"})
        assert (await client.frame())["error"]["kind"] == "invalid_request"
        await client.to_server.send({"type": "websocket.disconnect", "code": 1000})
        tg.cancel_scope.deadline = anyio.current_time() + 2


async def test_cancel_message_stops_the_running_request(request: pytest.FixtureRequest) -> None:
    backend = ScriptedBackend([f" w{i}" for i in range(200)], delay=0.01)
    app = create_app(backend, dialects=[PlainDialect()])
    client = Client()
    request.addfinalizer(client.close)
    async with anyio.create_task_group() as tg:
        tg.start_soon(app, scope(), client.receive, client.send)
        await client.to_server.send({"type": "websocket.connect"})
        await client.outbox.receive()
        await client.to_server.send(
            {"type": "websocket.receive", "text": json.dumps({"prompt": "x"})}
        )
        await client.until(lambda f: f.get("type") == "delta")
        await client.to_server.send({"type": "websocket.receive", "text": '{"type": "cancel"}'})
        frames = await client.until(lambda f: f.get("type") == "cancelled")
        assert len(frames) < 50
        assert backend.finished_normally == 0
        assert backend.closed_at is not None
        await client.to_server.send({"type": "websocket.disconnect", "code": 1000})


async def test_disconnect_cancels_the_running_request(request: pytest.FixtureRequest) -> None:
    backend = ScriptedBackend([f" w{i}" for i in range(200)], delay=0.01)
    app = create_app(backend, dialects=[PlainDialect()])
    client = Client()
    request.addfinalizer(client.close)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(app, scope(), client.receive, client.send)
            await client.to_server.send({"type": "websocket.connect"})
            await client.outbox.receive()
            await client.to_server.send(
                {"type": "websocket.receive", "text": json.dumps({"prompt": "x"})}
            )
            await client.until(lambda f: f.get("type") == "delta")
            await client.to_server.send({"type": "websocket.disconnect", "code": 1001})
    assert backend.finished_normally == 0
    assert backend.closed_at is not None


class QueuedClient(Client):
    """Receives as uvicorn does (an asyncio.Queue): a frame already waiting comes back at once.

    So frames that arrived together are read without the server yielding between them.
    """

    async def receive(self) -> Message:
        try:
            return self.inbox.receive_nowait()
        except anyio.WouldBlock:
            return await self.inbox.receive()


async def test_cancel_right_behind_a_request_stops_it(request: pytest.FixtureRequest) -> None:
    backend = ScriptedBackend([f" w{i}" for i in range(200)], delay=0.01)
    app = create_app(backend, dialects=[PlainDialect()])
    client = QueuedClient()
    request.addfinalizer(client.close)
    # Both frames arrive together: the cancel is read before the serving loop has taken
    # the request from the inbox.
    await client.to_server.send({"type": "websocket.connect"})
    await client.to_server.send({"type": "websocket.receive", "text": json.dumps({"prompt": "x"})})
    await client.to_server.send({"type": "websocket.receive", "text": '{"type": "cancel"}'})
    async with anyio.create_task_group() as tg:
        tg.start_soon(app, scope(), client.receive, client.send)
        assert (await client.outbox.receive())["type"] == "websocket.accept"
        frames = await client.until(lambda f: f == "[END]" or f.get("type") == "cancelled")
        assert frames[-1] == {"type": "cancelled"}
        assert len(frames) < 50
        assert backend.finished_normally == 0
        await client.to_server.send({"type": "websocket.disconnect", "code": 1000})


async def test_cancel_with_no_request_before_it_is_harmless(
    request: pytest.FixtureRequest,
) -> None:
    app = create_app(ScriptedBackend(["a", " b"]), dialects=[PlainDialect()])
    client = Client()
    request.addfinalizer(client.close)
    async with anyio.create_task_group() as tg:
        tg.start_soon(app, scope(), client.receive, client.send)
        await client.to_server.send({"type": "websocket.connect"})
        await client.outbox.receive()
        await client.to_server.send({"type": "websocket.receive", "text": '{"type": "cancel"}'})
        await client.to_server.send(
            {"type": "websocket.receive", "text": json.dumps({"prompt": "x"})}
        )
        frames = await client.until(lambda f: f == "[END]")
        assert [f["type"] for f in frames[:-1]] == ["open", "delta", "delta", "finish"]
        await client.to_server.send({"type": "websocket.disconnect", "code": 1000})
