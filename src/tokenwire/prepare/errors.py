"""Why `tokenwire prepare` stopped: each error names the bad value and what to do."""

from __future__ import annotations

PREPARE_EXTRA_HINT = "pip install 'tokenwire[prepare]'"


class PrepareError(Exception):
    """Preparation could not finish; the message says why and what to do."""


class MissingExtraError(PrepareError):
    """A toolchain package is not installed in this environment."""

    def __init__(self, missing: tuple[str, ...], *, hint: str = PREPARE_EXTRA_HINT) -> None:
        names = ", ".join(missing)
        super().__init__(
            f"model preparation needs {names}, which this environment lacks; "
            f"install the toolchain with: {hint}"
        )
        self.missing = missing
        self.hint = hint


class QualityGateError(PrepareError):
    """The quantized build disagrees with the fp32 build too often."""
