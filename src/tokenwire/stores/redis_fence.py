"""Writes fenced by a stream's lease: a producer that lost its lease (it stalled, and another
replica adopted the stream) has its next write refused by Redis, not stored beside the
adopter's.

Each is one `EVAL` that first compares the lease (`…:owner`) with the writer's own token
(`<replica>:<generation>`), then writes: a flush's token records and its entry, or the end
entry and the status. A stale owner's write fails with a `FENCED` error, which fails its
stream's writes from then on; the entry ids alone refused only a number already stored.
`EVAL` rather than `EVALSHA`: Redis caches the compiled script by its hash either way, and a
restarted Redis needs no reload.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenwire.stores.redis_writer import Command

FENCED = "FENCED"
"""How the error of a refused write begins."""

_ENTRY = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the lease of this stream is held by another replica')
end
local records = tonumber(ARGV[2])
if records > 0 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 3, 2 + records))
end
return redis.call('XADD', KEYS[3], unpack(ARGV, 3 + records))
"""

_END = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the lease of this stream is held by another replica')
end
local id = redis.call('XADD', KEYS[2], unpack(ARGV, 3))
redis.call('HSET', KEYS[3], 'status', ARGV[2])
return id
"""


def entry(
    owner: str,
    tokens: str,
    stream: str,
    token: str,
    records: Sequence[bytes],
    entry_id: str,
    fields: Sequence[str],
) -> Command:
    """`RPUSH tokens records…` (when any) then `XADD stream entry_id fields…`, while the lease
    at `owner` is `token`."""
    return (
        "EVAL",
        _ENTRY,
        3,
        owner,
        tokens,
        stream,
        token,
        len(records),
        *records,
        entry_id,
        *fields,
    )


def end(
    owner: str,
    stream: str,
    meta: str,
    token: str,
    status: str,
    entry_id: str,
    fields: Sequence[str],
) -> Command:
    """`XADD stream entry_id fields…` then the meta hash's status, while the lease at `owner` is
    `token`."""
    return ("EVAL", _END, 3, owner, stream, meta, token, status, entry_id, *fields)
