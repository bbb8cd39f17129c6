"""`python -m benchmarks.prompt_cache`: this benchmark alone (see `--help`)."""

from benchmarks.prompt_cache.benchmark import cli

if __name__ == "__main__":
    cli()
