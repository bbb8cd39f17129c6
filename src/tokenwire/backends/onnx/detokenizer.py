"""Streaming text out of token ids: UTF-8 safe pieces, and stop strings across token boundaries."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream


class IncrementalDetokenizer:
    """One sequence's `DecodeStream`: `step` returns "" while a character is incomplete.

    Pieces join to exactly the full decode; `flush` returns what is still held back (an
    unfinished character at the end of the stream decodes with replacement characters).
    """

    def __init__(self, tokenizer: Tokenizer, *, skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._stream = DecodeStream(skip_special_tokens=skip_special_tokens)
        self._last: list[int] = []  # ids of the last piece: context for decoding the held ids
        self._held: list[int] = []

    def step(self, token_id: int) -> str:
        piece = self._stream.step(self._tokenizer, token_id)
        self._held.append(token_id)
        if piece is None:
            return ""
        self._last, self._held = self._held, []
        return str(piece)

    def token_text(self, token_id: int) -> str:
        """One token's text on its own (special tokens included; half a character shows as
        a replacement character)."""
        return str(self._tokenizer.decode([token_id], skip_special_tokens=False))

    def flush(self) -> str:
        if not self._held:
            return ""
        context = self._tokenizer.decode(self._last, skip_special_tokens=self._skip)
        text = self._tokenizer.decode(self._last + self._held, skip_special_tokens=self._skip)
        self._held = []
        return str(text[len(context) :]) if text.startswith(context) else str(text)


class StopMatcher:
    """Finds stop strings in streamed text, holding back only a possible stop's beginning.

    `feed` returns the text safe to emit and the stop string found, if any; text from the
    stop string on is never emitted.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stop for stop in stops if stop)
        self._held = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        if not self.stops:
            return text, None
        buffer = self._held + text
        # The stop that completes first wins (of two ending together, the longer): generation
        # stops there, whatever the split of the text into deltas.
        found: tuple[int, int, str] | None = None
        for stop in self.stops:
            index = buffer.find(stop)
            if index != -1 and (found is None or (index + len(stop), index) < found[:2]):
                found = (index + len(stop), index, stop)
        if found is not None:
            self._held = ""
            return buffer[: found[1]], found[2]
        keep = self._possible_start(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], None

    def _possible_start(self, buffer: str) -> int:
        """Length of the longest suffix of `buffer` that begins some stop string."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
