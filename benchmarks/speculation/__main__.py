"""`python -m benchmarks.speculation`: this benchmark alone (see `--help`)."""

from benchmarks.speculation.benchmark import cli

if __name__ == "__main__":
    cli()
