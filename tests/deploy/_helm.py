"""Render the chart with the real helm binary and parse the manifests (no cluster needed)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "tokenwire"
# The oldest Kubernetes the tests validate against (kubernetes-validate's schemas).
KUBE_VERSION = "1.33.0"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1"
# "default" is values.yaml alone; the rest are helm/tokenwire/ci/<name>-values.yaml.
VALUES_CASES = (
    "default",
    *sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml")),
)


def values_args(case: str) -> list[str]:
    return [] if case == "default" else ["--values", str(CHART / "ci" / f"{case}-values.yaml")]


# Renders are pure functions of their arguments: tests share them (and must not mutate them).
_RENDERED: dict[tuple[Path, tuple[str, ...], tuple[str, ...]], Manifests] = {}


@dataclass(frozen=True, slots=True)
class HelmRunner:
    """The helm binary and the chart it works on."""

    binary: Path
    chart: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, check=False, timeout=60
        )

    def template(
        self,
        *args: str,
        api_versions: Sequence[str] = (SERVICE_MONITOR_API,),
        release: str = "release",
    ) -> subprocess.CompletedProcess[str]:
        """`helm template` at KUBE_VERSION, with the given extra API groups available."""
        api_args = [arg for api in api_versions for arg in ("--api-versions", api)]
        return self.run(
            "template", release, str(self.chart), "--kube-version", KUBE_VERSION, *api_args, *args
        )

    def render(self, *args: str, api_versions: Sequence[str] = (SERVICE_MONITOR_API,)) -> Manifests:
        """The parsed manifests of a render that must succeed; each render runs once per session."""
        key = (self.binary, args, tuple(api_versions))
        if key not in _RENDERED:
            completed = self.template(*args, api_versions=api_versions)
            assert completed.returncode == 0, completed.stderr
            _RENDERED[key] = Manifests.parse(completed.stdout)
        return _RENDERED[key]


@dataclass(frozen=True, slots=True)
class Manifests:
    """The documents of one render, looked up by kind."""

    text: str
    documents: tuple[dict[str, Any], ...]

    @classmethod
    def parse(cls, text: str) -> Manifests:
        return cls(text, tuple(d for d in yaml.safe_load_all(text) if d))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.documents if d["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    def server_container(self) -> dict[str, Any]:
        containers = self.pod_spec()["containers"]
        return next(c for c in containers if c["name"] == "tokenwire")

    def all_containers(self) -> Iterator[dict[str, Any]]:
        spec = self.pod_spec()
        yield from spec.get("initContainers", ())
        yield from spec["containers"]
