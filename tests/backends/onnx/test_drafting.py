"""Prompt lookup drafting: what it proposes and how its draft length adapts."""

from __future__ import annotations

from tokenwire.backends.onnx.drafting import (
    FIRST_COOLDOWN,
    DraftSettings,
    PromptLookupDrafter,
    accepted_prefix,
)


def test_proposes_what_followed_the_most_recent_earlier_match_of_the_suffix() -> None:
    drafter = PromptLookupDrafter(DraftSettings(max_tokens=4), [1, 2, 3, 4, 9, 1, 2, 3, 5, 6, 1, 2])
    drafter.limit = 4
    assert drafter.propose(8) == [3, 5, 6, 1]  # the later "1 2" wins
    drafter.extend([3])
    assert drafter.propose(2) == [5, 6]  # the longest suffix "1 2 3", capped by room


def test_proposes_nothing_without_a_match_or_room() -> None:
    drafter = PromptLookupDrafter(DraftSettings(), [1, 2, 3, 4])
    assert drafter.propose(8) == []
    drafter.extend([1, 2])
    assert drafter.propose(0) == []


def test_draft_length_grows_on_full_acceptance_and_shrinks_on_rejection() -> None:
    drafter = PromptLookupDrafter(DraftSettings(max_tokens=8), [])
    assert drafter.limit == 4
    drafter.record(4, 4)
    assert drafter.limit == 8
    drafter.record(8, 8)
    assert drafter.limit == 8
    drafter.record(8, 2)
    assert drafter.limit == 3


def test_failing_drafts_pause_drafting_for_a_growing_cooldown() -> None:
    drafter = PromptLookupDrafter(DraftSettings(patience=3), [7, 8, 7, 8, 7])
    for _ in range(3):
        assert drafter.propose(8)
        drafter.record(1, 0)
    assert drafter.propose(8) == []
    drafter.extend([8] * FIRST_COOLDOWN)
    assert drafter.propose(8)
    for _ in range(3):
        drafter.record(1, 0)
    assert drafter.pause == 2 * FIRST_COOLDOWN


def test_accepted_prefix_stops_at_the_first_disagreement() -> None:
    assert accepted_prefix([1, 2, 3], [1, 2, 9, 3]) == 2
    assert accepted_prefix([1, 2], [1, 2, 4]) == 2
    assert accepted_prefix([5], [1]) == 0
