"""values.yaml is documented and values.schema.json guards it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
import yaml

from tests.deploy._helm import CHART, HelmRunner

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\"/-]+):")


@dataclass(frozen=True, slots=True)
class ValueKey:
    """One key of values.yaml: its dotted path and how it is documented."""

    path: str
    documented: bool  # a `# --` comment right above it
    inherited: bool  # an ancestor has one, which covers everything under it
    is_section: bool  # a map whose value starts on the next line


def read_value_keys(text: str) -> list[ValueKey]:
    """The keys of a values file, following helm-docs' `# --` comment convention."""
    keys: list[ValueKey] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        match = _KEY.match(line) if stripped else None
        if match is None:  # a blank line, a list item or a continuation line
            comment = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = any(c.startswith("# --") for c in comment)
        path = ".".join([k for _, k, _ in stack] + [match["key"]])
        inherited = any(doc for _, _, doc in stack)
        is_section = not line.split(":", 1)[1].strip()
        keys.append(ValueKey(path, documented, inherited, is_section))
        stack.append((indent, match["key"], documented))
        comment = []
    return keys


def undocumented_values(text: str) -> list[str]:
    """Keys with no `# --` comment of their own or on an ancestor.

    A bare section needs no comment of its own when each of its children has one.
    """
    keys = read_value_keys(text)
    parents = {k.path.rpartition(".")[0] for k in keys}
    return [
        k.path
        for k in keys
        if not (k.documented or k.inherited) and not (k.is_section and k.path in parents)
    ]


def test_every_value_is_documented() -> None:
    assert undocumented_values((CHART / "values.yaml").read_text()) == []


def test_documentation_check_catches_an_undocumented_value() -> None:
    text = (
        "server:\n  # -- Port.\n  port: 8000\n  backend: onnx\n# -- Whole map.\nprobes:\n  a: 1\n"
    )
    assert undocumented_values(text) == ["server.backend"]


def test_schema_is_valid_json_and_covers_every_top_level_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert set(values) <= set(schema["properties"])
    assert set(values["server"]) == set(schema["properties"]["server"]["properties"])


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("server.prot=8001", "prot"),  # a typo is an error, not silently ignored
        ("server.port=70000", "port"),
        ("model.source=s3", "source"),
        ("image.variant=tpu", "variant"),
        ("server.logLevel=verbose", "logLevel"),
    ],
)
def test_schema_rejects_bad_values(helm: HelmRunner, setting: str, complaint: str) -> None:
    completed = helm.template("--set", setting)
    assert completed.returncode != 0
    assert complaint in completed.stderr


def test_readme_lists_every_documented_value() -> None:
    readme = (CHART / "README.md").read_text()
    documented = [
        k.path
        for k in read_value_keys((CHART / "values.yaml").read_text())
        if k.documented and not k.inherited
    ]
    assert documented
    assert [p for p in documented if f"| `{p}` |" not in readme] == []
