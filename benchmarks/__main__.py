"""`python -m benchmarks [--only NAME ...] [--quick]`: run tokenwire's benchmarks.

Results go to benchmarks/results/<name>.json; `--update-docs` also rewrites each
benchmark's generated block in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import shlex
import sys
from pathlib import Path

from benchmarks._shared.paths import REPO


def discover() -> dict[str, str]:
    """Every public subpackage of this package is a benchmark (name → its `benchmark`
    module, which has `main(*, quick, results_dir, docs, command)`). Listing them imports
    none. `_shared` holds what several of them use."""
    return {
        info.name: f"benchmarks.{info.name}.benchmark"
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if info.ispkg and not info.name.startswith("_")
    }


def main(argv: list[str] | None = None) -> int:
    benchmarks = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(benchmarks),
        help="run only this benchmark (repeatable); default: all",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument(
        "--update-docs", action="store_true", help="write the figures into docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    for name in args.only or sorted(benchmarks):
        module = importlib.import_module(benchmarks[name])
        module.main(
            quick=args.quick,
            results_dir=args.results_dir,
            docs=REPO / "docs" / "benchmarks.md" if args.update_docs else None,
            command=command,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
