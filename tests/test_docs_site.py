"""The docs site builds with `mkdocs build --strict`, and its API reference is real."""

from __future__ import annotations

import ast
import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tokenwire

REPO = Path(__file__).resolve().parents[1]
# Each of the four interfaces, and the module (and reference page) that defines it.
INTERFACES = {
    "Backend": "interfaces",
    "Dialect": "interfaces",
    "Middleware": "interfaces",
    "Transport": "endpoint",
}


def _text(page: Path) -> str:
    """The visible text of an HTML page, whitespace collapsed."""
    raw = re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))
    return " ".join(html.unescape(raw).split())


def _first_docstring_line(module: Path, name: str) -> str:
    """The first line of class `name`'s docstring, with Markdown code marks removed."""
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            docstring = ast.get_docstring(node)
            assert docstring, f"{name} has no docstring to render"
            return " ".join(docstring.splitlines()[0].replace("`", "").split())
    raise AssertionError(f"no class {name} in {module}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [m for m in ("mkdocs", "mkdocstrings") if importlib.util.find_spec(m) is None]
    assert not missing, f"the docs extra is not installed ({missing}): run make install"
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    return out


def test_docs_site_builds_strict_with_every_page(site: Path) -> None:
    for page in sorted((REPO / "docs").rglob("*.md")):
        relative = page.relative_to(REPO / "docs").with_suffix("")
        # use_directory_urls: a.md -> a/index.html, d/index.md -> d/index.html
        built = site / (relative.parent if relative.name == "index" else relative) / "index.html"
        assert built.is_file(), f"{page} was not built"


def test_api_reference_renders_interface_docstrings(site: Path) -> None:
    for name, module in INTERFACES.items():
        page = site / "reference" / module / "index.html"
        source = page.read_text(encoding="utf-8")
        text = _text(page)
        assert f'id="tokenwire.{module}.{name}"' in source, f"no heading for {name}"
        line = _first_docstring_line(REPO / "src" / "tokenwire" / f"{module}.py", name)
        assert line in text, f"{name}'s docstring ({line!r}) is not on the page"


def test_api_reference_index_links_every_reexported_name(site: Path) -> None:
    source = (site / "reference" / "index.html").read_text(encoding="utf-8")
    linked = set(
        re.findall(r'<a [^>]*href="[^"]+#tokenwire\.[\w.]+"[^>]*><code>(\w+)</code>', source)
    )
    missing = sorted(set(tokenwire.__all__) - linked)
    assert not missing, f"add these re-exports to docs/reference/index.md: {missing}"


def test_docs_images_are_copied_into_the_site(site: Path) -> None:
    for image in sorted((REPO / "docs").rglob("*.png")):
        assert (site / image.relative_to(REPO / "docs")).is_file(), f"{image} missing from site"
