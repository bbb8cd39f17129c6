"""One headless Chromium per test module, one tab shared by its tests."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.playground._browser import CHROMIUM, CHROMIUM_ARGS, Console, Traffic, ensure_browser

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ensure_browser()
    sync_api = importlib.import_module("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shared_page(browser: Browser) -> Iterator[tuple[Page, Console]]:
    # One tab for the whole module (every test navigates afresh): opening a tab costs more
    # than most of these tests.
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    console = Console()
    opened.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: console.errors.append(str(e)))
    yield opened, console
    context.close()


@pytest.fixture
def page(shared_page: tuple[Page, Console]) -> Page:
    return shared_page[0]


@pytest.fixture
def console(shared_page: tuple[Page, Console]) -> Console:
    shared_page[1].errors.clear()
    return shared_page[1]


@pytest.fixture
def traffic(page: Page) -> Iterator[Traffic]:
    recorded = Traffic()

    def record(request: Request) -> None:
        recorded.requests.append(request)

    page.on("request", record)
    yield recorded
    page.remove_listener("request", record)
