"""`python -m benchmarks.stream_store`: this benchmark alone (see `--help`)."""

from benchmarks.stream_store.benchmark import cli

if __name__ == "__main__":
    cli()
