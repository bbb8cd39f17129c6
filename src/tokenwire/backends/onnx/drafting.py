"""Prompt lookup drafting: propose a sequence's next tokens from its own earlier text.

The last n tokens of the sequence (prompt and output; n from `max_ngram` down to
`min_ngram`) are looked up among earlier n-grams; the tokens that followed the most recent
earlier occurrence are the draft. An index from n-gram to the position after it is kept up
to date as tokens arrive, so a proposal costs a few dictionary lookups, not a scan.

How many tokens a sequence drafts adapts to how many it has had accepted: a fully accepted
draft doubles the next one (up to `max_tokens`), a partly accepted one shrinks to what was
accepted plus one, and `patience` drafts in a row with nothing accepted pause drafting for
a cooldown that doubles each time (copying text tends to come in stretches).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The pause after the first run of failed drafts, in generated tokens, and its ceiling.
FIRST_COOLDOWN = 16
MAX_COOLDOWN = 256


@dataclass(frozen=True, slots=True)
class DraftSettings:
    """`max_tokens` drafted per step at most; n-grams of `min_ngram`..`max_ngram` tokens."""

    max_tokens: int = 8
    min_ngram: int = 2
    max_ngram: int = 4
    patience: int = 3

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"speculative_tokens must be >= 1, got {self.max_tokens}")
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise ValueError(
                f"n-gram sizes must satisfy 1 <= min <= max, got {self.min_ngram}, {self.max_ngram}"
            )


class PromptLookupDrafter:
    """One sequence's token history, its n-gram index and its adaptive draft length."""

    __slots__ = ("_index", "cooldown", "failures", "limit", "pause", "settings", "tokens")

    def __init__(self, settings: DraftSettings, tokens: Iterable[int]) -> None:
        self.settings = settings
        self.tokens: list[int] = []
        # n → n-gram → the position just after its most recent occurrence that has a
        # successor (the sequence's own suffix is never its own match).
        self._index: dict[int, dict[tuple[int, ...], int]] = {
            n: {} for n in range(settings.min_ngram, settings.max_ngram + 1)
        }
        self.limit = max(1, settings.max_tokens // 2)
        self.failures = 0  # drafts in a row with nothing accepted
        self.pause = 0  # tokens to generate before drafting again
        self.cooldown = FIRST_COOLDOWN
        self.extend(tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        """Append tokens the sequence now holds (sampled or accepted)."""
        history = self.tokens
        for token in tokens:
            end = len(history)
            # The n-grams ending at `end` now have a successor: `token`, at position `end`.
            for n, index in self._index.items():
                if end >= n:
                    index[tuple(history[end - n : end])] = end
            history.append(token)
            if self.pause:
                self.pause -= 1

    def propose(self, room: int) -> list[int]:
        """Up to `min(room, the current limit)` tokens that followed the longest matching
        suffix earlier on; empty while paused or when nothing matches."""
        count = min(room, self.limit)
        if count <= 0 or self.pause:
            return []
        history = self.tokens
        for n in range(self.settings.max_ngram, self.settings.min_ngram - 1, -1):
            if len(history) <= n:
                continue
            start = self._index[n].get(tuple(history[-n:]))
            if start is not None:
                return history[start : start + count]
        return []

    def record(self, drafted: int, accepted: int) -> None:
        """Adapt to a verified draft of `drafted` tokens of which `accepted` were kept."""
        settings = self.settings
        if accepted == drafted:
            self.limit = min(settings.max_tokens, self.limit * 2)
        else:
            self.limit = max(1, accepted + 1)
        if accepted:
            self.failures = 0
            self.cooldown = FIRST_COOLDOWN
            return
        self.failures += 1
        if self.failures >= settings.patience:
            self.failures = 0
            self.pause = self.cooldown
            self.cooldown = min(MAX_COOLDOWN, self.cooldown * 2)


def accepted_prefix(drafts: Sequence[int], tokens: Sequence[int]) -> int:
    """How many of `drafts` the verified `tokens` agree with, from the start."""
    count = 0
    for draft, token in zip(drafts, tokens, strict=False):
        if draft != token:
            break
        count += 1
    return count
