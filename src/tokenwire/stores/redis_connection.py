"""Reaching Redis: the client every Redis store uses, the start-up check, and key names."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenwire.config import redact_url
from tokenwire.stores.stream_store import StreamStoreError

BLOCK_MS = 1000  # a blocked reader looks at the lease this often


def connect(url: str) -> Redis:
    """A client for `url`: short connect timeouts so a lost Redis never hangs a stream."""
    client: Redis = Redis.from_url(
        url, socket_connect_timeout=2.0, socket_timeout=BLOCK_MS / 1000 + 4.0
    )
    return client


def check_reachable(url: str) -> None:
    """Ping Redis once, synchronously, before serving.

    Raises:
        StreamStoreError: Redis at `url` does not answer (the message names it, redacted).
    """
    from redis import Redis as SyncRedis

    try:
        client = SyncRedis.from_url(url, socket_connect_timeout=3.0, socket_timeout=3.0)
        try:
            client.ping()
        finally:
            client.close()
    except (RedisError, OSError, ValueError) as exc:
        raise StreamStoreError(
            f"the stream store at {redact_url(url)} is unreachable: {exc}"
        ) from exc


def key(request_id: str, kind: str) -> str:
    """A stream's keys share a hash tag, so they live on one Redis Cluster slot."""
    return f"tokenwire:{{{request_id}}}:{kind}"
