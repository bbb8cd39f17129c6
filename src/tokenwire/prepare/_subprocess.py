"""Run toolchain steps as subprocesses with their output in a log file.

Heavy steps (torch, transformers, the model builder) run out of process: the caller never
imports torch, its memory is returned when the step ends, and a crash becomes an error
message with the log's tail instead of a dead CLI.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tokenwire.prepare.errors import PrepareError


def quiet_env() -> dict[str, str]:
    """The current environment with progress bars off: our stages report progress instead."""
    return dict(os.environ, TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")


def run_logged(
    command: list[str], log_file: Path, *, what: str, env: dict[str, str] | None = None
) -> None:
    """Run `command` with its output appended to `log_file`; on failure raise with its tail.

    Raises:
        PrepareError: the command exited non-zero.
    """
    with log_file.open("ab") as log:
        completed = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, env=env or quiet_env(), check=False
        )
    if completed.returncode != 0:
        raise PrepareError(
            f"{what} failed with exit status {completed.returncode}; "
            f"last lines of {log_file}:\n{log_tail(log_file)}"
        )


def log_tail(log_file: Path, *, lines: int = 15) -> str:
    # Progress bars rewrite one line with \r: split on both to keep the last real lines.
    text = log_file.read_text(encoding="utf-8", errors="replace")
    kept = [line for line in re.split(r"[\r\n]+", text) if line.strip()]
    return "\n".join(kept[-lines:])
