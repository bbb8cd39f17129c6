"""What a producer records for failover, and how a continuation numbers and checks the
payloads it renders again (the Redis side and the cluster: tests/scaleout/test_failover.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest

from tokenwire.errors import GenerationError
from tokenwire.events import Event, Finish, Progress, TokenDelta, ToolCallDelta
from tokenwire.interfaces import Payload
from tokenwire.stores.token_record import TokenRecord, decode, encode
from tokenwire.transports._failover import Recorder


def _run(recorder: Recorder, events: list[Event], payloads_per_event: list[int]) -> list[bool]:
    """Observe `events`, keeping as many payloads after each as the producer would."""
    kept: list[bool] = []
    for event, count in zip(events, payloads_per_event, strict=True):
        recorder.observe(event)
        for _ in range(count):
            kept.append(recorder.keep(Payload(f"p{recorder.kept}")))
    return kept


def test_each_events_tokens_are_recorded_with_the_payload_number_they_end_at() -> None:
    recorder = Recorder()
    events: list[Event] = [
        Progress("prefill", 3),
        TokenDelta("a", (5,)),
        TokenDelta("", ()),  # no tokens: nothing to replay
        ToolCallDelta(0, "id", "f", "", (6, 7)),
        Finish("stop"),
    ]
    # The progress payload, then the role chunk and "a", nothing, the call, the closing two.
    kept = _run(recorder, events, [1, 2, 0, 1, 2])
    assert all(kept)
    record = decode(recorder.take() or b"")
    assert record == TokenRecord(1, ((3, (5,)), (6, (6, 7))))
    assert recorder.take() is None  # nothing new since


def test_the_producer_observes_every_event_between_the_payloads_it_keeps() -> None:
    """`Call.payloads` shows the recorder each event, progress ones too, after the previous
    event's payloads were kept and before its own: the numbers it notes are the stream's."""
    from tokenwire.dialects.openai_chat import OpenAIChatDialect
    from tokenwire.endpoint import Endpoint

    events: list[Event] = [
        Progress("prefill", 3),
        TokenDelta("a", (5,)),
        Progress("decode"),  # mid-stream: no payload
        TokenDelta("b", (6, 7)),
        Finish("stop"),
    ]

    async def generate(request: object) -> AsyncIterator[Event]:
        for event in events:
            yield event

    endpoint = Endpoint(OpenAIChatDialect(), generate, "m")  # type: ignore[arg-type]
    body = '{"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]}'
    call = endpoint.start(body, {}, "req_1")
    call.progress = True
    recorder = Recorder()
    seen: list[Event] = []

    def observe(event: Event) -> None:
        seen.append(event)
        recorder.observe(event)

    async def main() -> list[Payload]:
        kept = []
        async for payload in call.payloads(None, observe):
            assert recorder.keep(payload)
            kept.append(payload)
        return kept

    kept = anyio.run(main)
    assert seen == events
    record = decode(recorder.take() or b"")
    # Payload 0 is the progress one, then the role chunk and "a" (1, 2), "b" (3), the end.
    assert record.progress == 1
    (a_end, a_ids), (b_end, b_ids) = record.groups
    assert (a_ids, b_ids) == ((5,), (6, 7))
    assert '"a"' in kept[a_end - 1].data and '"b"' in kept[a_end].data
    assert b_end == len(kept)  # the last group ends where the record was taken


def test_a_continuation_drops_and_checks_what_was_stored() -> None:
    stored = {1: Payload("p1"), 2: Payload("p2")}
    recorder = Recorder(kept=1, resume_from=3, expected=stored, skip_groups=1, progress=1)
    kept = _run(recorder, [TokenDelta("a", (5,)), TokenDelta("b", (6,))], [2, 1])
    assert kept == [False, False, True]  # payloads 1 and 2 were stored; 3 is new
    assert decode(recorder.take() or b"") == TokenRecord(1, ((4, (6,)),))


def test_records_of_the_earlier_json_format_are_still_read() -> None:
    """A replica of the version before the binary record may have written them (rolling
    upgrade): both formats decode to the same record."""
    earlier = json.dumps({"g": [[3, [5]], [6, [6, 7]]], "p": 1}).encode()
    assert decode(earlier) == decode(encode([1, 3], [(5,), (6, 7)], 6, 1))
    assert decode(b'{"g": [[2, [9]]]}') == TokenRecord(None, ((2, (9,)),))


def test_a_record_of_large_ids_and_empty_groups_round_trips() -> None:
    groups: list[tuple[int, ...]] = [(2**40,), (), (0, 1, 2)]
    assert decode(encode([0, 1, 1], groups, 4, None)) == TokenRecord(
        None, ((1, (2**40,)), (1, ()), (4, (0, 1, 2)))
    )
    with pytest.raises(ValueError, match="add up"):
        decode(encode([0], [(1, 2)], 1, None)[:-8])  # cut short


def test_a_replay_that_renders_other_bytes_fails_the_stream() -> None:
    recorder = Recorder(kept=0, resume_from=2, expected={0: Payload("other")})
    with pytest.raises(GenerationError):
        recorder.keep(Payload("p0"))


def test_only_a_backend_that_continues_enables_failover() -> None:
    """Without `ContinuesGeneration` nothing is recorded or adopted: a dead owner's stream
    ends for its readers, as before failover."""
    from redis.asyncio import Redis

    from tokenwire.backends.echo import EchoBackend
    from tokenwire.stores.redis_control import RedisStreamControl
    from tokenwire.stores.redis_store import RedisStreamStore
    from tokenwire.transports._failover import Failover

    client = Redis()  # never connected: nothing here does I/O
    store = RedisStreamStore(client, max_stream_bytes=1, ttl_seconds=1, done_seconds=1)
    failover = Failover(client, store, RedisStreamControl(client), 1)
    endpoints = {"openai-chat": object()}

    class Plain:
        model_id = "plain"

    failover.serve(endpoints, Plain())  # type: ignore[arg-type]
    assert not failover.enabled
    failover.serve(endpoints, EchoBackend())  # type: ignore[arg-type]
    assert failover.enabled
