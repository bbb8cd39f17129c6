from __future__ import annotations

from tokenwire_upstream._sse import ServerSentEvent, SSEDecoder


def decode_all(lines: list[str]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [e for e in map(decoder.decode, lines) if e is not None]


def test_event_is_dispatched_at_the_blank_line() -> None:
    assert decode_all(["data: one", ""]) == [ServerSentEvent("one")]


def test_multiple_data_lines_join_with_newlines() -> None:
    assert decode_all(["data: a", "data:b", "data:  c", ""]) == [ServerSentEvent("a\nb\n c")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    assert decode_all([": keep-alive", "retry: 10", "foo: bar", "data: x", ""]) == [
        ServerSentEvent("x")
    ]


def test_event_name_and_id_are_kept_and_the_name_resets() -> None:
    events = decode_all(["event: delta", "id: 7", "data: x", "", "data: y", ""])
    assert events == [ServerSentEvent("x", "delta", "7"), ServerSentEvent("y", "message", "7")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert decode_all(["", "event: ping", "", ""]) == []


def test_an_event_cut_off_by_the_end_of_the_stream_is_not_dispatched() -> None:
    assert decode_all(["data: whole", "", 'data: {"half']) == [ServerSentEvent("whole")]


def test_a_leading_byte_order_mark_is_stripped() -> None:
    assert decode_all(["\ufeffdata: x", ""]) == [ServerSentEvent("x")]


def test_a_field_with_no_colon_has_an_empty_value() -> None:
    assert decode_all(["data", ""]) == [ServerSentEvent("")]
