"""Prompt lookup drafting: what it proposes and how its draft length adapts."""

from __future__ import annotations

import pytest

from tokenwire.backends.onnx.drafting import (
    FIRST_COOLDOWN,
    Acceptance,
    DraftCosts,
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


def test_kept_length_drafts_every_match_at_the_most_tokens_even_after_a_rejection() -> None:
    drafter = PromptLookupDrafter(DraftSettings(max_tokens=8, keep_length=True), list(range(20)))
    assert drafter.limit == 8
    drafter.extend([0, 1])
    assert drafter.propose(16) == list(range(2, 10))
    drafter.record(8, 2)
    assert drafter.limit == 8
    assert len(drafter.propose(16)) == 8
    drafter.record(8, 0)
    assert drafter.failures == 1  # failures still count towards the pause


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


def test_the_priced_length_grows_with_acceptance_and_falls_to_none() -> None:
    costs = DraftCosts(max_tokens=8)
    costs.ratios = [1.0 + 0.15 * k for k in range(9)]
    assert costs.best(0.99, 8) == 8  # nearly certain drafts: the longest run pays most
    assert 1 <= costs.best(0.6, 8) < 8
    assert costs.best(0.1, 8) == 0  # a draft that is mostly wrong costs more than it yields
    assert costs.best(0.99, 3) == 3  # never past the room


def test_timings_move_the_price_of_a_draft_length() -> None:
    costs = DraftCosts(max_tokens=4)
    costs.observe_verify(2, 0.05)  # no plain step timed yet: nothing to compare with
    assert costs.ratios[2] == DraftCosts(max_tokens=4).ratios[2]
    costs.observe_plain(0.01)
    for _ in range(100):
        costs.observe_verify(2, 0.04)  # verifying 2 drafts costs 4 plain steps here
    assert costs.ratios[2] == pytest.approx(4.0, rel=0.01)
    assert costs.best(0.9, 2) == 1  # so 2 drafts are not worth it, 1 still is


def test_a_sequence_whose_drafts_fail_stops_drafting_and_one_whose_drafts_hold_keeps_on() -> None:
    costs = DraftCosts(max_tokens=8)
    pooled = Acceptance()
    failing = PromptLookupDrafter(DraftSettings(patience=100), [7, 8, 9, 7, 8], costs, pooled)
    proposals = []
    for _ in range(6):
        draft = failing.propose(8)
        proposals.append(len(draft))
        if draft:
            failing.record(len(draft), 0)
    assert proposals[0] > 0 and proposals[-1] == 0
    copying = PromptLookupDrafter(DraftSettings(patience=100), [1, 2, 3, 4, 5, 6, 1, 2], costs)
    for _ in range(4):
        draft = copying.propose(8)
        assert draft
        copying.record(len(draft), len(draft))
    assert copying.propose(8) == [3, 4, 5, 6, 1, 2]  # all that followed "1 2", priced in full
    assert copying.acceptance.rate(2) > 0.8


def test_acceptance_is_kept_per_matched_ngram_length_over_a_pooled_prior() -> None:
    pooled = Acceptance()
    one = Acceptance(pooled)
    for _ in range(10):
        one.record(2, 4, 0)
        one.record(4, 4, 4)
    assert one.rate(2) < 0.1 < 0.9 < one.rate(4)
    fresh = Acceptance(pooled)  # a new sequence starts from what the others saw
    assert fresh.rate(2) < 0.5 < fresh.rate(4)
