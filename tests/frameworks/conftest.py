"""Fixtures for the framework tests: the Node clients' packages, installed with `npm ci`."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """The Node project whose pinned packages (package-lock.json) the tests run; installed from
    the npm registry once, and again whenever the lock file changes."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "the framework tests need node and npm on PATH (Debian: apt-get install nodejs npm)"
        )
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    stamp = NODE_DIR / "node_modules" / ".tokenwire-lock"
    if not stamp.exists() or stamp.read_bytes() != lock:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=True,
            timeout=600,
        )
        stamp.write_bytes(lock)
    return NODE_DIR


def run_node(node_dir: Path, *args: str) -> dict[str, object]:
    """Run `clients.mjs` with `args`; its last output line is the JSON result."""
    done = subprocess.run(
        ["node", "clients.mjs", *args],
        cwd=node_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"node clients.mjs {' '.join(args)} failed:\n{done.stderr}"
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(autouse=True)
def collect_framework_clients() -> Iterator[None]:
    """LangChain's chat models build HTTP clients of their own and offer no way to close
    them: collect them when each test ends, so their pooled sockets are released here rather
    than warning inside whichever test the garbage collector happens to run in."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
