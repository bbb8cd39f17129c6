"""`run_standalone`: the command line of a benchmark run alone (`python -m benchmarks.NAME`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._shared.paths import REPO


def run_standalone(
    name: str, description: str | None, main: Callable[..., Any], argv: Sequence[str] | None
) -> None:
    """Parse `--quick`, `--results-dir`, `--update-docs` and `--model`, then call `main` with
    them and the command line as it is recorded in docs/benchmarks.md."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--model", type=Path, help="a prepared model directory")
    args = parser.parse_args(argv)
    command = " ".join(["python", "-m", f"benchmarks.{name}", *sys.argv[1:]])
    docs = REPO / "docs" / "benchmarks.md" if args.update_docs else None
    main(quick=args.quick, results_dir=args.results_dir, docs=docs, command=command,
         model=args.model)  # fmt: skip
