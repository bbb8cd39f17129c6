from tokenwire.transports.sse import encode_comment, encode_event


def parse(raw: bytes) -> list[tuple[str, str]]:
    """Field lines of one event as a WHATWG parser would see them."""
    text = raw.decode()
    assert text.endswith("\n\n")
    fields = []
    for line in text[:-2].replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        name, _, value = line.partition(":")
        fields.append((name, value[1:] if value.startswith(" ") else value))
    return fields


def test_event_has_id_event_and_data_lines() -> None:
    assert encode_event('{"a":1}', event="message_start", id="r:0") == (
        b'id: r:0\nevent: message_start\ndata: {"a":1}\n\n'
    )


def test_newlines_in_id_and_event_cannot_inject_fields() -> None:
    raw = encode_event("x", event="a\r\nid: evil\ndata: y", id="1\nretry: 1\r")
    names = [name for name, _ in parse(raw)]
    assert names == ["id", "event", "data"]


def test_multiline_data_round_trips() -> None:
    raw = encode_event("one\ntwo\r\nthree")
    assert [value for name, value in parse(raw) if name == "data"] == ["one", "two", "three"]


def test_nul_is_dropped_from_ids() -> None:
    assert b"\x00" not in encode_event("x", id="a\x00b")


def test_comment_is_ignored_by_parsers() -> None:
    assert encode_comment("keep-alive") == b": keep-alive\n\n"
