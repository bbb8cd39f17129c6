"""`python -m benchmarks.onnx_backend`: this benchmark alone (see `--help`)."""

from benchmarks.onnx_backend.benchmark import cli

if __name__ == "__main__":
    cli()
