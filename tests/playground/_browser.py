"""Chromium for the playground's browser tests: where it is, how it is launched, and what a
test records of the page (console errors, requests)."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-chromium.sh"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def ensure_browser() -> None:
    """Install Chromium and Playwright when missing; fail when that fails."""
    if CHROMIUM.exists() and importlib.util.find_spec("playwright") is not None:
        return
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    importlib.invalidate_caches()
    if result.returncode != 0 or importlib.util.find_spec("playwright") is None:
        message = f"{INSTALL_SCRIPT.name} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        pytest.fail(message)


@dataclass
class Console:
    """What the page logged as an error; a CSP violation or a script bug shows up here."""

    errors: list[str] = field(default_factory=list)


@dataclass
class Traffic:
    """The requests the page sent."""

    requests: list[Request] = field(default_factory=list)

    def of(self, method: str) -> list[Request]:
        return [request for request in self.requests if request.method == method]


def open_playground(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-models=loaded]")
