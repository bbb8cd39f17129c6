"""`RedisStreamControl`: leases, reader presence and cancels shared through Redis.

- Lease: `SET owner <replica>:<generation> NX PX ttl`, the generation an `INCR` per claim (a
  fence: a renewal only extends a lease whose value is still ours).
- Presence: a key per stream set with `PX grace` by each replica while a reader is attached
  there, and once more when the last one leaves; the producer cancels when it is gone.
- Cancel: a cancel key (polled by the owner) and a message on one pub/sub channel; the
  replica that runs the request acks on a list the asker waits on with `BLPOP`.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenwire.stores.redis_connection import key
from tokenwire.stores.stream_control import CancelLocal
from tokenwire.stores.stream_store import StreamStoreError

logger = logging.getLogger("tokenwire.resume")

CHANNEL = "tokenwire:control"
_ACK_SECONDS = 2.0

# Extend the lease only while it still holds our own token.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# A claim in one round trip (it runs before a stream's first token): a new generation, the
# lease taken with it only if nobody holds one, and the counter kept a while past the lease.
_CLAIM = """
local generation = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if redis.call('SET', KEYS[2], ARGV[1] .. ':' .. generation, 'NX', 'PX', ARGV[2]) then
  return generation
end
return -generation
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisStreamControl:
    """Stream control shared by every replica using the same Redis."""

    def __init__(self, client: Redis, replica: str | None = None) -> None:
        self.client = client
        self.replica = replica or uuid.uuid4().hex[:12]
        self._renew: Any = client.register_script(_RENEW)
        self._release: Any = client.register_script(_RELEASE)
        self._claim: Any = client.register_script(_CLAIM)

    def _token(self, generation: int) -> str:
        return f"{self.replica}:{generation}"

    async def claim(self, request_id: str, seconds: float) -> int | None:
        try:
            generation = int(
                await self._claim(
                    keys=[key(request_id, "generation"), key(request_id, "owner")],
                    args=[self.replica, _ms(seconds), _ms(seconds) + 60_000],
                )
            )
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"claim {request_id!r}: {exc}") from exc
        return generation if generation > 0 else None

    async def renew(self, request_id: str, generation: int, seconds: float) -> bool:
        try:
            held = await self._renew(
                keys=[key(request_id, "owner")], args=[self._token(generation), _ms(seconds)]
            )
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"renew {request_id!r}: {exc}") from exc
        return bool(held)

    async def release(self, request_id: str, generation: int) -> None:
        try:
            await self._release(keys=[key(request_id, "owner")], args=[self._token(generation)])
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"release {request_id!r}: {exc}") from exc

    async def touch(self, request_id: str, seconds: float) -> None:
        try:
            await self.client.set(key(request_id, "readers"), self.replica, px=_ms(seconds))
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"touch {request_id!r}: {exc}") from exc

    async def present(self, request_id: str) -> bool:
        try:
            return bool(await self.client.exists(key(request_id, "readers")))
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"present {request_id!r}: {exc}") from exc

    async def cancel(self, request_id: str) -> bool:
        ack = f"tokenwire:ack:{uuid.uuid4().hex}"
        try:
            if not await self.client.exists(key(request_id, "owner")):
                return False
            # The key reaches an owner that missed the message (it polls it).
            await self.client.set(key(request_id, "cancel"), "1", px=60_000)
            message = json.dumps({"id": request_id, "ack": ack})
            if await self.client.publish(CHANNEL, message):
                await self.client.blpop([ack], timeout=_ACK_SECONDS)  # type: ignore[misc]
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"cancel {request_id!r}: {exc}") from exc
        return True

    async def cancel_requested(self, request_id: str) -> bool:
        try:
            return bool(await self.client.exists(key(request_id, "cancel")))
        except (RedisError, OSError) as exc:
            raise StreamStoreError(f"cancel_requested {request_id!r}: {exc}") from exc

    async def serve_cancels(self, cancel: CancelLocal) -> None:
        while True:
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(CHANNEL)
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is None:
                            continue
                        data = json.loads(message["data"])
                        cancelled = cancel(str(data["id"]))
                        if cancelled:
                            await self.client.rpush(str(data["ack"]), cancelled)  # type: ignore[misc]
                            await self.client.expire(str(data["ack"]), 10)
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            except (RedisError, OSError, ValueError, KeyError) as exc:
                logger.warning("stream control channel lost (%s); retrying", exc)
                await anyio.sleep(1.0)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
