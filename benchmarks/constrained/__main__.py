"""`python -m benchmarks.constrained`: this benchmark alone (see `--help`)."""

from benchmarks.constrained.benchmark import cli

if __name__ == "__main__":
    cli()
