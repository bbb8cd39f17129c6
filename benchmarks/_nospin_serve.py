"""`tokenwire serve` with ONNX Runtime's intra-op spin-waiting turned off: an experiment.

ORT's thread pool spins after each parallel section and each run, waiting for more work.
tokenwire returns to its event loop between steps, so on a machine with as many cores as
intra-op threads the spinning threads compete with the event loop (and with everything
else on a shared machine). This launcher patches `onnxruntime.SessionOptions` so every
session gets `session.intra_op.allow_spinning=0`, then runs the CLI unchanged; the
benchmark serves the same model with and without it, side by side.

Run as `python -m benchmarks._nospin_serve serve ...` (the `tokenwire` arguments).
"""

from __future__ import annotations

import sys

import onnxruntime as ort


class _NoSpinOptions(ort.SessionOptions):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.add_session_config_entry("session.intra_op.allow_spinning", "0")


def main() -> int:
    ort.SessionOptions = _NoSpinOptions
    from tokenwire.cli import main as cli

    return int(cli(sys.argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
