"""`python -m benchmarks.ttft`: this benchmark alone (see `--help`)."""

from benchmarks.ttft.benchmark import cli

if __name__ == "__main__":
    cli()
