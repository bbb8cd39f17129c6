"""The playground page as served: headers, self-containment, accessibility, mounting."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tokenwire import create_app
from tokenwire.backends.echo import EchoBackend
from tokenwire.playground import PlaygroundPage, playground_routes


def playground_app() -> Starlette:
    return create_app(EchoBackend())


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


class _Markup(HTMLParser):
    """Collects the tags of the page, with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def markup(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Markup()
    parser.feed(html)
    return parser.tags


@pytest.mark.anyio
async def test_get_root_serves_the_page_beside_the_api() -> None:
    async with client(playground_app()) as http:
        page = await http.get("/")
        models = await http.get("/v1/models")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>tokenwire playground</title>" in page.text
    assert page.headers["cache-control"] == "no-cache"
    assert models.json()["data"][0]["id"] == "echo"


@pytest.mark.anyio
async def test_head_root_answers_without_a_body() -> None:
    async with client(playground_app()) as http:
        response = await http.head("/")
    assert response.status_code == 200
    assert response.content == b""


@pytest.mark.anyio
async def test_page_is_served_under_a_mount_prefix_and_redirects_the_bare_prefix() -> None:
    outer = Starlette(routes=[Mount("/llm", playground_app())])
    async with client(outer) as http:
        bare = await http.get("/llm")
        page = await http.get("/llm/")
    assert bare.status_code in (307, 308)
    assert bare.headers["location"].endswith("/llm/")
    assert page.status_code == 200
    assert "tokenwire playground" in page.text


def test_csp_allows_exactly_the_inline_script_and_style() -> None:
    page = PlaygroundPage.load()
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
    )
    for tag in ("script", "style"):
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page.html, re.DOTALL)
        assert len(blocks) == 1
        digest = base64.b64encode(hashlib.sha256(blocks[0].encode()).digest()).decode()
        assert policy[f"{tag}-src"] == f"'sha256-{digest}'"
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"


@pytest.mark.anyio
async def test_a_custom_page_is_served_with_its_own_policy() -> None:
    page = PlaygroundPage.from_html("<p>hi</p>")
    assert "script-src 'none'" in page.headers["content-security-policy"]
    app = Starlette(routes=playground_routes(page))
    async with client(app) as http:
        response = await http.get("/")
    assert response.text == "<p>hi</p>"
    assert response.headers["content-security-policy"] == page.headers["content-security-policy"]


def test_page_loads_nothing_from_elsewhere_and_uses_relative_urls() -> None:
    html = PlaygroundPage.load().html
    # No CDN, no absolute origin, no root-relative path (which would break under /llm/).
    assert not re.search(r"https?://|wss?://|//cdn", html)
    for tag, attrs in markup(html):
        assert "src" not in attrs, tag
        if "href" in attrs:
            assert (attrs["href"] or "").startswith("data:"), attrs
    for call in re.findall(r"""api\(\s*[`"']([^`"']*)""", html):
        assert not call.startswith("/"), call
    assert re.findall(r"""fetch\(\s*[`"']""", html) == []  # every fetch goes through api()


def test_every_control_has_a_label_and_the_answer_is_a_live_region() -> None:
    tags = markup(PlaygroundPage.load().html)
    labelled = {attrs["for"] for tag, attrs in tags if tag == "label" and "for" in attrs}
    controls = [attrs.get("id") for tag, attrs in tags if tag in ("input", "select", "textarea")]
    assert set(controls) == {
        "dialect",
        "transport",
        "model",
        "max-tokens",
        "tools",
        "tool-choice",
        "schema",
        "prompt",
    }
    assert set(controls) <= labelled
    by_id = {attrs.get("id"): attrs for _, attrs in tags}
    assert by_id["transcript"]["aria-live"] == "polite"
    assert by_id["transcript"]["role"] == "log"
    assert by_id["error"]["role"] == "alert"
    assert by_id["agent-error"]["role"] == "alert"
    # The panel's fields point at the error that names them.
    assert (
        by_id["tools"]["aria-describedby"] == by_id["schema"]["aria-describedby"] == "agent-error"
    )
    options = {attrs.get("value") for tag, attrs in tags if tag == "option"}
    assert {"openai", "anthropic", "gemini", "sse", "ndjson", "websocket"} <= options


def test_page_ships_as_package_data() -> None:
    from importlib.resources import files

    resource = files("tokenwire.playground").joinpath("index.html")
    assert resource.is_file()
    assert resource.read_text("utf-8") == PlaygroundPage.load().html
