"""`FrameBuffer`, the bounded hand-over between a stream's renderer and its socket writer."""

from __future__ import annotations

import anyio
import pytest

from tokenwire.send_buffers import SendBuffers
from tokenwire.transports._backpressure import FrameBuffer

pytestmark = pytest.mark.anyio


async def test_offer_takes_frames_until_the_bound_and_take_joins_them() -> None:
    accounts = SendBuffers()
    frames = FrameBuffer(10, accounts)

    assert frames.offer(b"12345")
    assert frames.offer(b"67890abc")  # below the bound when offered: taken whole
    assert not frames.offer(b"x")  # full: the caller must `put` and wait
    assert accounts.bytes == 13

    body = await frames.take()
    assert body == b"1234567890abc"
    assert not frames.offer(b"x")  # still counted until the write returns
    frames.sent(len(body))
    assert accounts.bytes == 0
    assert frames.offer(b"x")


async def test_a_waiting_writer_wakes_for_each_frame_and_ends_on_close() -> None:
    frames = FrameBuffer(1024, SendBuffers())
    taken: list[bytes | None] = []

    async def writer() -> None:
        while True:
            body = await frames.take()
            taken.append(body)
            if body is None:
                return
            frames.sent(len(body))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await anyio.wait_all_tasks_blocked()
            assert frames.offer(b"a")
            await anyio.wait_all_tasks_blocked()
            assert frames.offer(b"b")
            await anyio.wait_all_tasks_blocked()
            frames.close()

    assert taken == [b"a", b"b", None]


async def test_put_waits_for_room_until_the_write_returns() -> None:
    frames = FrameBuffer(4, SendBuffers())
    assert frames.offer(b"full")
    done = anyio.Event()

    async def renderer() -> None:
        await frames.put(b"next")
        done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(renderer)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()

            body = await frames.take()
            frames.sending_started()
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()  # taken, but not yet written: still counted
            frames.sending = False
            frames.sent(len(body or b""))
            await done.wait()

    assert await frames.take() == b"next"
