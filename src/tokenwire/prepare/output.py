"""Where a prepared model lands: the up-to-date check, staging dirs and the atomic rename.

A model dir is finished exactly when it holds `manifest.json`: the manifest is written last
into a staging dir beside the output, and the staging dir is renamed into place, so a crash
leaves at worst a hidden `.NAME.staging-PID-*` dir that the next run deletes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tokenwire.backends.onnx.manifest import MANIFEST_NAME, ModelManifest
from tokenwire.prepare.errors import PrepareError


def read_finished(output: Path) -> ModelManifest | None:
    """The manifest of a finished model at `output`, or None (absent, unreadable or stale)."""
    try:
        manifest = ModelManifest.read(output)
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None
    if not (output / manifest.model_file).is_file():
        return None
    return manifest


def rewrite_manifest(output: Path, manifest: ModelManifest) -> None:
    """Replace a finished model's manifest in one rename: a reader sees the old or the new."""
    staged = output / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    staged.write_text(manifest.to_json(), encoding="utf-8")
    staged.chmod((output / MANIFEST_NAME).stat().st_mode & 0o777)
    os.replace(staged, output / MANIFEST_NAME)


def is_up_to_date(
    manifest: ModelManifest | None, *, sha256: str, exporter: str, precision: str, recipe: str
) -> bool:
    """True when `manifest` was built from the same source bytes, options and recipe."""
    return (
        manifest is not None
        and manifest.source.get("sha256") == sha256
        and manifest.source.get("recipe") == recipe
        and manifest.exporter == exporter
        and manifest.precision == precision
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned(output: Path) -> list[Path]:
    """Delete staging/work dirs of `output` left by runs whose process is gone."""
    removed: list[Path] = []
    if not output.parent.is_dir():
        return removed
    for kind in ("staging", "work", "retired"):
        for candidate in output.parent.glob(f".{output.name}.{kind}-*"):
            pid_text = candidate.name.rsplit(f".{kind}-", 1)[1].split("-", 1)[0]
            if (
                pid_text.isdigit()
                and int(pid_text) != os.getpid()
                and not _pid_alive(int(pid_text))
            ):
                shutil.rmtree(candidate, ignore_errors=True)
                removed.append(candidate)
    return removed


@contextmanager
def temp_dir_beside(output: Path, kind: str) -> Iterator[Path]:
    """A hidden temp dir on the output's filesystem (so rename is atomic), removed on exit."""
    output.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{output.name}.{kind}-{os.getpid()}-", dir=output.parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def check_replaceable(output: Path) -> None:
    """Refuse to replace a non-empty dir that is not a prepared model (a user's own files).

    Raises:
        PrepareError: `output` is a file, or a non-empty dir without a manifest.
    """
    if output.is_file():
        raise PrepareError(f"output {str(output)!r} is a file; pass a directory with --output")
    if output.is_dir() and not (output / MANIFEST_NAME).is_file() and any(output.iterdir()):
        raise PrepareError(
            f"output {str(output)!r} exists and is not a prepared model (no {MANIFEST_NAME}); "
            "remove it or choose another --output"
        )


def _make_readable(directory: Path) -> None:
    # mkdtemp makes the dir private (0700) and some writers create 0600 files; a model dir
    # should be as readable as anything else this user creates.
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(path.stat().st_mode | (0o444 & ~umask))


def publish(staging: Path, output: Path) -> None:
    """Move the finished `staging` dir to `output`, replacing an older build there."""
    check_replaceable(output)
    _make_readable(staging)
    if not output.exists():
        staging.rename(output)
        return
    # rename() cannot replace a non-empty dir: move the old build aside first. Between the
    # two renames `output` is absent, never half-written.
    retired = Path(
        tempfile.mkdtemp(prefix=f".{output.name}.retired-{os.getpid()}-", dir=output.parent)
    )
    retired.rmdir()
    output.rename(retired)
    try:
        staging.rename(output)
    except OSError:
        retired.rename(output)
        raise
    shutil.rmtree(retired, ignore_errors=True)
