"""`GET /`: the playground page, a single static HTML file shipped inside the package.

The page has no build step and loads nothing from elsewhere (inline CSS and JS, relative
URLs), so it works offline and under a mount prefix such as `/llm/`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class PlaygroundPage:
    """The page's HTML and the headers it is served with."""

    html: str
    headers: Mapping[str, str]

    @classmethod
    def load(cls) -> PlaygroundPage:
        """Read `index.html` from the installed package (wheel, sdist or source tree)."""
        return cls.from_html(
            files("tokenwire.playground").joinpath("index.html").read_text("utf-8")
        )

    @classmethod
    def from_html(cls, html: str) -> PlaygroundPage:
        """A page whose Content-Security-Policy admits exactly its inline `<script>` and `<style>`."""
        return cls(html, _headers(html))


def _headers(html: str) -> dict[str, str]:
    # The CSP allows exactly the inline blocks of this page (by hash) and same-origin
    # requests; `connect-src 'self'` also covers ws:/wss: to the same host (CSP level 3).
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for match in _INLINE.finditer(html):
        digest = hashlib.sha256(match.group(2).encode("utf-8")).digest()
        hashes[match.group(1)].append(f"'sha256-{base64.b64encode(digest).decode()}'")
    sources = {kind: " ".join(found) or "'none'" for kind, found in hashes.items()}
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {sources['script']}",
            f"style-src {sources['style']}",
            "connect-src 'self'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'self'",
        ]
    )
    return {
        "content-security-policy": policy,
        # Revalidated on every load, so an upgraded server never serves a stale page.
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    }


def playground_routes(page: PlaygroundPage | None = None) -> list[BaseRoute]:
    """The playground's routes: `GET /` (and `HEAD /`) serving the page.

    Args:
        page: the page to serve; the one shipped with tokenwire when None.
    """
    served = page if page is not None else PlaygroundPage.load()

    async def index(request: Request) -> Response:
        return HTMLResponse(served.html, headers=dict(served.headers))

    return [Route("/", index, methods=["GET"], name="playground")]
