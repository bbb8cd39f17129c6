"""`python -m benchmarks.prefill`: this benchmark alone (see `--help`)."""

from benchmarks.prefill.benchmark import cli

if __name__ == "__main__":
    cli()
