"""Where the repository is, for results, logs, caches and child processes' working dir."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
