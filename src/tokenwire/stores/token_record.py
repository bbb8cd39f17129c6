"""Failover's token record: the token ids of the events behind one write of payloads, as
bytes (one element of a stream's `tokens` list, see `redis_failover`).

A record is `MAGIC` then little-endian signed 64-bit integers:
`progress, n, kept, start_1 … start_n, len_1 … len_n, ids…` — `progress` the progress
payloads before the first event (-1: not in this record), per event (a group) the payload
number its payloads start at and how many of the flat `ids` are its own, and `kept` the
payload number after the last group's payloads (a group ends where the next starts).

Why binary: the record is written with every flush, one group per decode step. Written as
JSON text it cost ~0.4 µs a token (a `str()` and an f-string per id and per group), 5% of the
echo backend's whole per-token budget at 134k tokens/s; one `struct.pack` of them all costs
~0.06 µs a token. The recorder keeps them as flat lists of ints (`pack`). Records of the
earlier JSON format (`{"g": [[end, [ids]], …], "p": n}`) are still read, so replicas of both
versions can share a Redis during a rolling upgrade.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

MAGIC = b"\x00tw1"
"""Starts every binary record (a JSON record starts with `{`)."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One decoded record: `progress` (None: not in it) and `(end, ids)` per group."""

    progress: int | None
    groups: tuple[tuple[int, tuple[int, ...]], ...]


def encode(
    starts: Sequence[int], groups: Sequence[Sequence[int]], kept: int, progress: int | None
) -> bytes:
    """The record of `groups` (the ids of events whose payloads start at numbers `starts`,
    the last ending before `kept`) and `progress`."""
    return pack(starts, list(map(len, groups)), list(chain.from_iterable(groups)), kept, progress)


def pack(
    starts: Sequence[int],
    lengths: Sequence[int],
    ids: Sequence[int],
    kept: int,
    progress: int | None,
) -> bytes:
    """`encode` of groups given flat: their starts, how many ids each has, all the ids."""
    n = len(starts)
    head = -1 if progress is None else progress
    return MAGIC + struct.pack(f"<{3 + 2 * n + len(ids)}q", head, n, kept, *starts, *lengths, *ids)


def decode(record: bytes) -> TokenRecord:
    """A record of either format.

    Raises:
        ValueError: it is neither.
    """
    if not record.startswith(MAGIC):
        data = json.loads(record)
        progress = data.get("p")
        return TokenRecord(
            None if progress is None else int(progress),
            tuple((int(end), tuple(int(i) for i in ids)) for end, ids in data.get("g", ())),
        )
    body = record[len(MAGIC) :]
    if len(body) % 8 or len(body) < 24:
        raise ValueError("a token record of a broken length")
    numbers = struct.unpack(f"<{len(body) // 8}q", body)
    progress, n, kept = numbers[:3]
    starts, lengths, ids = numbers[3 : 3 + n], numbers[3 + n : 3 + 2 * n], numbers[3 + 2 * n :]
    if n < 0 or len(lengths) != n or sum(lengths) != len(ids):
        raise ValueError("a token record's lengths do not add up to its ids")
    ends = (*starts[1:], kept)
    groups = []
    at = 0
    for end, length in zip(ends, lengths, strict=True):
        groups.append((end, ids[at : at + length]))
        at += length
    return TokenRecord(None if progress < 0 else progress, tuple(groups))
