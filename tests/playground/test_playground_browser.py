"""The playground in a real browser: Debian's Chromium, driven by Playwright, against uvicorn.

Chromium and Playwright come from scripts/install-chromium.sh (run here when either is
missing, see `_browser.py`); Playwright never downloads browsers of its own.
"""

from __future__ import annotations

import functools
import re
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

from tests._support.backends import ScriptedBackend
from tests._support.server import running_server
from tests.playground._browser import Console, Traffic, open_playground
from tokenwire import create_app
from tokenwire.backends.echo import EchoBackend, split_words
from tokenwire.interfaces import Backend, MiddlewareFactory
from tokenwire.middlewares import CancellationMiddleware, MetricsMiddleware

if TYPE_CHECKING:
    from playwright.sync_api import Page

TOKEN_DELAY = 0.04  # seconds per echoed word: slow enough to watch the text grow
PROMPT = "Streaming works: héllo 世界 👋🏽 and every word arrives on its own, end"
DIALECTS = ("openai", "anthropic", "gemini")
TRANSPORTS = ("sse", "ndjson", "websocket")


def playground(backend: Backend, *middlewares: MiddlewareFactory) -> Starlette:
    return create_app(backend, middlewares=middlewares)


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with running_server(playground(EchoBackend(delay=TOKEN_DELAY), CancellationMiddleware)) as url:
        yield url


@dataclass
class Answer:
    """What the page showed for one request, sampled while it streamed."""

    lengths: list[int]
    text: str
    state: str
    ttft: str
    ttft_ms: float | None
    rate: float | None
    tokens: str
    error: str | None


# Samples the answer's length every 10 ms inside the page, so that how busy the test
# machine is cannot thin out the samples; stops once the status is final.
_START_SAMPLING = """() => {
  const samples = window.tokenwireSamples = [];
  const timer = setInterval(() => {
    const answer = document.getElementById("answer");
    samples.push(answer ? answer.textContent.length : 0);
    if (["done", "stopped", "error"].includes(document.getElementById("status").dataset.state)) {
      clearInterval(timer);
    }
  }, 10);
}"""
_FINAL = ",".join(f"#status[data-state={state}]" for state in ("done", "stopped", "error"))


def start(page: Page, prompt: str, dialect: str, transport: str) -> None:
    page.select_option("#dialect", dialect)
    page.select_option("#transport", transport)
    page.fill("#prompt", prompt)
    page.evaluate(_START_SAMPLING)
    page.click("#send")


def answer_length(page: Page) -> int:
    return len(page.text_content("#answer") or "")


def wait_for_length(page: Page, length: int, timeout: float = 5.0) -> None:
    # Polled from here: the page's CSP rightly forbids wait_for_function's string eval.
    deadline = time.monotonic() + timeout
    while answer_length(page) < length:
        assert time.monotonic() < deadline, f"the answer never reached {length} characters"
        time.sleep(0.01)


def read_answer(page: Page) -> Answer:
    page.wait_for_selector(_FINAL)
    values: dict[str, Any] = page.evaluate(
        """() => ({
          samples: window.tokenwireSamples,
          text: document.getElementById("answer").textContent,
          state: document.getElementById("status").dataset.state,
          ttft: document.getElementById("ttft").textContent,
          ttftMs: document.getElementById("ttft").dataset.ms ?? null,
          rate: document.getElementById("tps").dataset.rate ?? null,
          tokens: document.getElementById("tokens").textContent,
          error: document.getElementById("error").hidden
            ? null : document.getElementById("error").textContent,
        })"""
    )
    return Answer(
        values["samples"],
        values["text"],
        values["state"],
        values["ttft"],
        None if values["ttftMs"] is None else float(values["ttftMs"]),
        None if values["rate"] is None else float(values["rate"]),
        values["tokens"],
        values["error"],
    )


def ask(page: Page, prompt: str, dialect: str, transport: str) -> Answer:
    start(page, prompt, dialect, transport)
    return read_answer(page)


def assert_grew(lengths: list[int], final: int) -> None:
    assert lengths == sorted(lengths), f"the text shrank: {lengths}"
    # Three partial lengths, not one per token: on a starved machine the server rightly
    # sends the tokens that piled up in one write, and the page gets them at once.
    partial = {n for n in lengths if 0 < n < final}
    assert len(partial) >= 3, f"too few intermediate lengths: {sorted(set(lengths))}"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_answer_streams_token_by_token_with_live_stats(
    page: Page, console: Console, echo_url: str, dialect: str, transport: str
) -> None:
    open_playground(page, echo_url)
    answer = ask(page, PROMPT, dialect, transport)

    assert answer.error is None
    assert answer.state == "done"
    assert answer.text == PROMPT
    assert_grew(answer.lengths, len(PROMPT))
    # The first word is echoed after one delay, so TTFT cannot be below it.
    assert answer.ttft_ms is not None and TOKEN_DELAY * 1000 <= answer.ttft_ms < 2000
    assert re.fullmatch(r"\d+ ms", answer.ttft)
    assert answer.rate is not None and 5 < answer.rate < 2 / TOKEN_DELAY
    assert answer.tokens == str(len(split_words(PROMPT)))  # the usage the server reported
    assert console.errors == []


def test_conversation_sends_history_and_the_newest_answer_is_the_live_one(
    page: Page, echo_url: str
) -> None:
    open_playground(page, echo_url)
    first = ask(page, "one two three", "anthropic", "sse")
    second = ask(page, "four five six seven", "anthropic", "sse")
    assert (first.text, second.text) == ("one two three", "four five six seven")
    turns = page.locator("#transcript li .text").all_text_contents()
    assert turns == ["one two three", "one two three", "four five six seven", "four five six seven"]
    page.click("#clear")
    assert page.locator("#transcript li").count() == 0


def wait_closed(backend: ScriptedBackend, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while backend.closed_at is None and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("dialect", "transport"), [("openai", "sse"), ("anthropic", "ndjson"), ("gemini", "websocket")]
)
def test_stop_halts_the_stream_and_closes_the_backend_generator(
    page: Page, console: Console, traffic: Traffic, dialect: str, transport: str
) -> None:
    # 300 tokens at 50 ms: the answer cannot end on its own during the test.
    backend = ScriptedBackend([f" w{i}" for i in range(300)], delay=0.05)
    with running_server(playground(backend, CancellationMiddleware)) as url:
        open_playground(page, url)
        start(page, "go", dialect, transport)
        wait_for_length(page, len(" w0 w1 w2 w3 w4"))
        page.click("#stop")
        page.wait_for_selector("#status[data-state=stopped]", timeout=5_000)
        stopped_at = answer_length(page)
        time.sleep(0.4)  # eight token intervals
        assert answer_length(page) == stopped_at
        wait_closed(backend)

    assert 0 < stopped_at < len("".join(backend.tokens)) // 4
    assert backend.started == 1
    assert backend.closed_at is not None, "the backend's generator was never closed"
    assert backend.finished_normally == 0
    assert page.is_enabled("#send") and not page.is_enabled("#stop")
    assert page.is_hidden("#error")
    deletes = traffic.of("DELETE")
    if transport == "websocket":
        assert deletes == []  # the cancel travels as a frame on the socket
    else:
        # The page names its own request id, and cancels it by id too, for proxies that hide
        # the disconnect; the server may answer 404 when the abort got there first.
        (post,) = traffic.of("POST")
        request_id = post.headers["x-request-id"]
        response = post.response()
        assert response is not None and response.headers["x-request-id"] == request_id
        (delete,) = deletes
        assert delete.url == f"{url}/v1/requests/{request_id}"
        delete_response = delete.response()
        assert delete_response is not None and delete_response.status in (200, 404)
        if delete_response.status == 404:
            # Chromium logs every 4xx fetch; that 404 is the race above, not a page error.
            console.errors.remove(
                "Failed to load resource: the server responded with a status of 404 (Not Found)"
            )
    assert console.errors == []


@pytest.mark.parametrize(
    ("dialect", "transport"), [("openai", "ndjson"), ("anthropic", "websocket"), ("gemini", "sse")]
)
def test_server_error_before_the_first_token_is_shown(
    page: Page, echo_url: str, dialect: str, transport: str
) -> None:
    open_playground(page, echo_url)
    page.fill("#model", "no-such-model")
    answer = ask(page, "hello", dialect, transport)
    assert answer.state == "error"
    assert answer.error is not None
    assert "The model 'no-such-model' does not exist; this server serves 'echo'." in answer.error
    if transport != "websocket":
        assert answer.error.startswith("HTTP 404")
    assert answer.text == ""


@pytest.mark.parametrize(("dialect", "transport"), [("openai", "sse"), ("gemini", "websocket")])
def test_error_after_the_first_tokens_is_shown_in_band(
    page: Page, dialect: str, transport: str
) -> None:
    backend = ScriptedBackend([" a", " b", " c", " d"], delay=0.02, fail_at=3)
    with running_server(playground(backend)) as url:
        open_playground(page, url)
        answer = ask(page, "hello", dialect, transport)
    assert answer.state == "error"
    assert answer.text == " a b c"
    assert answer.error is not None and answer.error.startswith("The stream failed:")
    assert "secret internals" not in answer.error


@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_page_works_under_a_mount_prefix(
    page: Page, console: Console, traffic: Traffic, transport: str
) -> None:
    outer = Starlette(routes=[Mount("/llm", playground(EchoBackend(delay=0.005)))])
    with running_server(outer) as url:
        open_playground(page, f"{url}/llm")  # redirected to /llm/
        answer = ask(page, "mounted under a prefix", "openai", transport)
    assert answer.text == "mounted under a prefix"
    paths = [httpx.URL(request.url).path for request in traffic.requests]
    assert paths[0] == "/llm" and len(paths) >= 3, paths  # the page, the models, the chat
    assert all(path.startswith("/llm/") for path in paths[1:]), paths
    assert console.errors == []


def ttft_sum_ms(url: str) -> tuple[float, float]:
    """The server's time-to-first-token histogram over all labels: (observations, sum in ms)."""
    totals = {"_count": 0.0, "_sum": 0.0}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            name, _, suffix = sample.name.rpartition("_")
            if name == "tokenwire_time_to_first_token_seconds" and f"_{suffix}" in totals:
                totals[f"_{suffix}"] += sample.value
    return totals["_count"], totals["_sum"] * 1000


def test_ttft_on_the_page_agrees_with_the_server_metric(page: Page) -> None:
    metrics = functools.partial(MetricsMiddleware, registry=CollectorRegistry())
    differences: list[float] = []
    with running_server(playground(EchoBackend(delay=0.1), metrics)) as url:
        open_playground(page, url)
        # The page's first request also pays for compiling its streaming code; measure the
        # steady state, as a person trying several prompts sees it.
        ask(page, "warm up", "openai", "sse")
        for transport in TRANSPORTS:
            count_before, sum_before = ttft_sum_ms(url)
            answer = ask(page, "first word", "openai", transport)
            count_after, sum_after = ttft_sum_ms(url)
            assert count_after == count_before + 1
            assert answer.ttft_ms is not None
            differences.append(answer.ttft_ms - (sum_after - sum_before))
    # The page's clock also covers the request's trip to the server and the token's way back,
    # so it can only read more; the median forgives one request the test machine stalled.
    assert min(differences) > -1, differences
    assert statistics.median(differences) < 50, differences
