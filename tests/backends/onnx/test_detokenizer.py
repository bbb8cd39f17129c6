"""Incremental detokenization (UTF-8 safe) and stop strings across token boundaries."""

from __future__ import annotations

import itertools

import pytest

from tests.backends.onnx.tiny_models import build_tokenizer
from tokenwire.backends.onnx.detokenizer import IncrementalDetokenizer, StopMatcher

TOKENIZER = build_tokenizer()

TEXTS = [
    "Emoji: 😀🚀 and a flag 🇫🇷 done",
    "CJK: 東京は日本の首都です。中文 한국어",
    "Combining: e\u0301 n\u0303 a\u0308\u0304 Z\u0351\u0362",
    "mixed 🧑‍🚀 café 東 e\u0301!",
]


@pytest.mark.parametrize("text", TEXTS)
def test_pieces_join_to_the_full_decode_without_replacement_characters(text: str) -> None:
    ids = TOKENIZER.encode(text).ids
    detokenizer = IncrementalDetokenizer(TOKENIZER)
    pieces = [detokenizer.step(i) for i in ids]
    pieces.append(detokenizer.flush())
    assert "".join(pieces) == TOKENIZER.decode(ids) == text
    assert not any("\ufffd" in piece for piece in pieces)
    # The case is real: some tokens end inside a character and yield nothing yet.
    assert "" in pieces[:-1]


def test_a_character_cut_off_at_the_end_is_flushed() -> None:
    ids = TOKENIZER.encode("ok 東").ids
    detokenizer = IncrementalDetokenizer(TOKENIZER)
    pieces = [detokenizer.step(i) for i in ids[:-1]]
    assert "".join(pieces) == "ok"  # " 東" starts with its space: held with the character
    held = detokenizer.flush()
    assert held.startswith(" ") and "\ufffd" in held
    assert detokenizer.flush() == ""


def test_special_tokens_are_skipped() -> None:
    ids = [TOKENIZER.token_to_id("<|im_start|>"), *TOKENIZER.encode("hi").ids]
    detokenizer = IncrementalDetokenizer(TOKENIZER)
    assert "".join(detokenizer.step(i) for i in ids) + detokenizer.flush() == "hi"


def _run(matcher: StopMatcher, pieces: list[str]) -> tuple[str, str | None]:
    out = []
    for piece in pieces:
        text, stop = matcher.feed(piece)
        out.append(text)
        if stop is not None:
            return "".join(out), stop
    out.append(matcher.flush())
    return "".join(out), None


def _splits(text: str, parts: int) -> list[list[str]]:
    result = []
    for cuts in itertools.combinations(range(1, len(text)), parts - 1):
        bounds = (0, *cuts, len(text))
        result.append([text[a:b] for a, b in itertools.pairwise(bounds)])
    return result


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_stop_string_is_found_across_every_split_and_never_emitted(parts: int) -> None:
    text = "Say STOP now"
    for pieces in _splits(text, parts):
        emitted, stop = _run(StopMatcher(["STOP"]), pieces)
        assert (emitted, stop) == ("Say ", "STOP"), pieces


@pytest.mark.parametrize("parts", [2, 3])
def test_false_starts_of_a_stop_string_are_released(parts: int) -> None:
    text = "STAY ST STO and SToP"
    for pieces in _splits(text, parts):
        assert _run(StopMatcher(["STOP"]), pieces) == (text, None), pieces


def test_the_earliest_of_several_stop_strings_wins() -> None:
    assert _run(StopMatcher(["world", "lo w"]), ["Hel", "lo wor", "ld"]) == ("Hel", "lo w")
    assert _run(StopMatcher(["\n\n", "END"]), ["a\n", "\nEND"]) == ("a", "\n\n")


def test_held_back_text_is_only_a_possible_stop_prefix() -> None:
    matcher = StopMatcher(["<end>"])
    assert matcher.feed("abc<e") == ("abc", None)
    assert matcher.feed("x") == ("<ex", None)


def test_no_stop_strings_passes_text_straight_through() -> None:
    assert StopMatcher(["", ""]).feed("abc") == ("abc", None)
