"""Fixtures for the deployment tests: a real helm binary and charts rendered once per module."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy._helm import CHART, REPO, HelmRunner


@pytest.fixture(scope="session")
def helm() -> HelmRunner:
    """The helm binary in .cache/bin, installed by scripts/install-helm.sh on first use."""
    binary = REPO / ".cache" / "bin" / "helm"
    if not os.access(binary, os.X_OK):
        completed = subprocess.run(
            ["bash", str(REPO / "scripts" / "install-helm.sh")],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if completed.returncode != 0:
            pytest.fail(f"scripts/install-helm.sh failed:\n{completed.stderr}")
        binary = Path(completed.stdout.strip().splitlines()[-1])
    return HelmRunner(binary, CHART)
