"""Property tests: the SSE encoder, the detokenizer, the stop-string matcher and seeds.

Hypothesis runs derandomized (the same examples on every run, see `conftest.py`), so a
failure in CI reproduces locally; raise `TOKENWIRE_HYPOTHESIS_EXAMPLES` to search further.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.backends.onnx.tiny_models import SPECIAL_TOKENS, build_tokenizer
from tokenwire.backends.onnx.detokenizer import IncrementalDetokenizer, StopMatcher
from tokenwire.backends.onnx.sampling import Sampler, SamplingParams
from tokenwire.dialects._validate import SEED_MAX, SEED_MIN
from tokenwire.transports.sse import encode_comment, encode_event

# --- A WHATWG-conformant event-stream parser (HTML §9.2.6), written from the spec. ---------


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    type: str
    data: str
    last_event_id: str


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def parse_event_stream(stream: bytes) -> list[ParsedEvent]:
    """The events a browser's EventSource dispatches for `stream`."""
    text = stream.decode("utf-8", errors="replace").removeprefix("\ufeff")
    *lines, _incomplete = _LINE_BREAK.split(text)  # a line without its end is discarded
    events: list[ParsedEvent] = []
    data, event_type, last_event_id = "", "", ""
    for line in lines:
        if not line:
            if data:
                events.append(ParsedEvent(event_type or "message", data[:-1], last_event_id))
            data, event_type = "", ""
            continue
        if line.startswith(":"):
            continue
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            event_type = value
        elif field == "data":
            data += value + "\n"
        elif field == "id" and "\0" not in value:
            last_event_id = value
        # "retry" and unknown fields change no event.
    return events


def test_the_parser_follows_the_spec_examples() -> None:
    # The spec's own examples (§9.2.6): two events, the second with two data lines and an
    # id; a field without a colon; one space after the colon dropped, a second kept.
    stream = b"data: first\r\n\r\n: comment\ndata:second\ndata\nid: 7\nevent:x\n\ndata:  y\n"
    assert parse_event_stream(stream) == [
        ParsedEvent("message", "first", ""),
        ParsedEvent("x", "second\n", "7"),
    ]


# --- The SSE encoder ----------------------------------------------------------------------

# Any text UTF-8 can carry, biased towards the characters that end SSE lines or ids.
_breakers = st.sampled_from(["\r", "\n", "\r\n", "\0", "\n\n", "\r\r", ":", " ", "\ufeff"])
sse_text = st.lists(st.one_of(st.characters(codec="utf-8"), _breakers), max_size=24).map("".join)


def _normalized(data: str) -> str:
    """What SSE can carry of `data`: its lines, each line break read back as LF."""
    return data.replace("\r\n", "\n").replace("\r", "\n")


@given(data=sse_text, event=st.none() | sse_text, event_id=st.none() | sse_text)
def test_an_encoded_event_parses_as_exactly_that_event(
    data: str, event: str | None, event_id: str | None
) -> None:
    parsed = parse_event_stream(encode_event(data, event=event, id=event_id))
    # Newlines in the id or event name cannot start another field, let alone another event.
    expected_type = (event or "").replace("\r", "").replace("\n", "") or "message"
    expected_id = (event_id or "").replace("\r", "").replace("\n", "").replace("\0", "")
    assert parsed == [ParsedEvent(expected_type, _normalized(data), expected_id)]


@given(data=sse_text)
def test_data_round_trips(data: str) -> None:
    [parsed] = parse_event_stream(encode_event(data))
    assert parsed.data == _normalized(data)
    if "\r" not in data:
        assert parsed.data == data


@given(
    events=st.lists(st.tuples(sse_text, st.none() | sse_text, st.none() | sse_text), max_size=5),
    comment=sse_text,
)
def test_a_stream_of_events_and_comments_parses_event_for_event(
    events: list[tuple[str, str | None, str | None]], comment: str
) -> None:
    stream = encode_comment(comment).join(
        encode_event(data, event=event, id=event_id) for data, event, event_id in events
    )
    parsed = parse_event_stream(encode_comment(comment) + stream)
    assert [p.data for p in parsed] == [_normalized(data) for data, _, _ in events]


# --- The incremental detokenizer ------------------------------------------------------------

TOKENIZER = build_tokenizer()
VOCAB = TOKENIZER.get_vocab_size()
_SPECIAL_IDS = [TOKENIZER.token_to_id(token) for token in SPECIAL_TOKENS]


def _pieces(ids: Sequence[int]) -> Iterator[str]:
    detokenizer = IncrementalDetokenizer(TOKENIZER)
    for token_id in ids:
        yield detokenizer.step(token_id)
    yield detokenizer.flush()


# Multi-byte characters whose bytes the tiny byte-level BPE splits over several tokens.
_wide = st.sampled_from(["😀", "🚀", "🇫🇷", "東", "日本", "é", "e\u0301", "한", "🧑‍🚀", "\u2028"])
unicode_text = st.lists(
    st.one_of(st.characters(codec="utf-8"), _wide, st.sampled_from(SPECIAL_TOKENS)), max_size=20
).map("".join)


@given(text=unicode_text)
def test_pieces_of_valid_text_never_hold_half_a_character(text: str) -> None:
    ids = TOKENIZER.encode(text).ids
    pieces = list(_pieces(ids))
    assert "".join(pieces) == TOKENIZER.decode(ids)
    if "\ufffd" not in text:
        assert not any("\ufffd" in piece for piece in pieces), pieces


token_ids = st.lists(
    st.one_of(st.integers(0, VOCAB - 1), st.sampled_from(_SPECIAL_IDS)), max_size=24
)


@given(ids=token_ids)
def test_pieces_of_any_token_sequence_join_to_the_full_decode(ids: list[int]) -> None:
    # Random ids make invalid UTF-8 too: replacement characters appear only where the full
    # decode has them, so a piece never cuts a valid character in half.
    assert "".join(_pieces(ids)) == TOKENIZER.decode(ids)


@given(text=unicode_text, cut=st.integers(0, 40))
def test_text_is_held_back_only_while_a_character_is_incomplete(text: str, cut: int) -> None:
    ids = TOKENIZER.encode(text).ids
    cut = min(cut, len(ids))
    detokenizer = IncrementalDetokenizer(TOKENIZER)
    emitted = "".join(detokenizer.step(token_id) for token_id in ids[:cut])
    decoded = TOKENIZER.decode(ids[:cut])
    assert decoded.startswith(emitted)
    held = decoded[len(emitted) :]
    assert not held or held.endswith("\ufffd"), held
    if cut == len(ids):
        assert detokenizer.flush() == ""  # valid text: nothing is left at the end


# --- Stop strings ---------------------------------------------------------------------------


def first_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """The reference: generation stops where a stop string first completes (the earliest
    end; of two ending there, the one starting earlier); what precedes it is the output."""
    best: tuple[int, int, str] | None = None
    for stop in stops:
        start = text.find(stop) if stop else -1
        if start != -1 and (best is None or (start + len(stop), start) < best[:2]):
            best = (start + len(stop), start, stop)
    return (text, None) if best is None else (text[: best[1]], best[2])


def run_matcher(stops: Sequence[str], pieces: Sequence[str]) -> tuple[str, str | None]:
    """Feed `pieces`; check after each that only a possible stop beginning is held back."""
    matcher = StopMatcher(stops)
    emitted, consumed = "", ""
    for piece in pieces:
        consumed += piece
        text, stop = matcher.feed(piece)
        emitted += text
        if stop is not None:
            return emitted, stop
        held = consumed[len(emitted) :]
        assert consumed.startswith(emitted)
        assert not held or any(s.startswith(held) and s != held for s in stops if s), held
    return emitted + matcher.flush(), None


def every_split(text: str) -> Iterator[list[str]]:
    """Every way to cut `text` into consecutive non-empty deltas."""
    for mask in itertools.product((False, True), repeat=max(len(text) - 1, 0)):
        pieces, start = [], 0
        for index, cut in enumerate(mask, start=1):
            if cut:
                pieces.append(text[start:index])
                start = index
        pieces.append(text[start:])
        yield pieces


# A small alphabet makes overlapping and nested stop strings common.
small_text = st.text(alphabet="ab \n", max_size=9)


@st.composite
def text_and_stops(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(small_text)
    inside = st.builds(
        lambda a, b: text[min(a, b) : max(a, b)], st.integers(0, 9), st.integers(0, 9)
    )
    stops = draw(st.lists(st.one_of(inside, st.text(alphabet="ab \n", max_size=4)), max_size=4))
    return text, stops


@given(case=text_and_stops())
def test_stop_strings_are_found_across_every_split_and_never_emitted(
    case: tuple[str, list[str]],
) -> None:
    text, stops = case
    expected = first_stop(text, stops)
    for pieces in every_split(text):
        assert run_matcher(stops, pieces) == expected, pieces


@given(text=unicode_text, stops=st.lists(unicode_text, max_size=3), data=st.data())
def test_stop_strings_in_any_unicode_text_match_the_reference(
    text: str, stops: list[str], data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(text) - 1, 1)))))
    bounds = [0, *(c for c in cuts if c < len(text)), len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert run_matcher(stops, pieces) == first_stop(text, stops)


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("xabcd", ["bcd", "c"], ("xab", "c")),  # "c" completes first, though "bcd" starts earlier
        ("Say STOP now", ["STOP"], ("Say ", "STOP")),
        ("no stop here", ["STOPS"], ("no stop here", None)),
    ],
)
def test_the_reference_is_the_first_completed_stop(
    text: str, stops: list[str], expected: tuple[str, str | None]
) -> None:
    assert first_stop(text, stops) == expected


# --- Seeds --------------------------------------------------------------------------------

_api_seeds = st.integers(SEED_MIN, SEED_MAX)


@given(seed=_api_seeds)
@example(seed=SEED_MIN)
@example(seed=-1)
@example(seed=0)
@example(seed=2**63 - 1)
@example(seed=SEED_MAX)
def test_any_seed_the_dialects_accept_seeds_a_reproducible_sampler(seed: int) -> None:
    # A seed the schema allows must never reach the sampler as an error (it was a 500).
    first, again = (Sampler(SamplingParams(temperature=1.0), seed) for _ in range(2))
    assert first.rng.integers(2**63, size=4).tolist() == again.rng.integers(2**63, size=4).tolist()


@given(seeds=st.lists(_api_seeds, min_size=2, max_size=2, unique=True))
@example(seeds=[-1, SEED_MAX])
@example(seeds=[-1, 1])
@example(seeds=[SEED_MIN, 2**63])
def test_distinct_seeds_seed_distinct_samplers(seeds: list[int]) -> None:
    one, other = (Sampler(SamplingParams(temperature=1.0), seed) for seed in seeds)
    assert one.rng.integers(2**63, size=4).tolist() != other.rng.integers(2**63, size=4).tolist()
