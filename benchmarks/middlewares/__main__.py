"""`python -m benchmarks.middlewares`: this benchmark alone (see `--help`)."""

from benchmarks.middlewares.benchmark import cli

if __name__ == "__main__":
    cli()
