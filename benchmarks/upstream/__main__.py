"""`python -m benchmarks.upstream`: this benchmark alone (see `--help`)."""

from benchmarks.upstream.benchmark import cli

if __name__ == "__main__":
    cli()
