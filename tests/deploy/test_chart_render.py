"""`helm lint`, `helm template` and schema validation for the default values and every ci/ file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy._helm import VALUES_CASES, HelmRunner, Manifests, values_args

# Every apiVersion the chart may emit: GA APIs that Kubernetes 1.30+ serves, and the
# Prometheus Operator's. kubernetes-validate only WARNs on removed APIs (policy/v1beta1,
# autoscaling/v2beta2, networking.k8s.io/v1beta1), so this list is the real check.
ALLOWED_API_VERSIONS = {
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("networking.k8s.io/v1", "Ingress"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}


def test_ci_values_files_exist_for_each_provisioning_mode() -> None:
    assert {"minimal", "full", "existing-pvc", "gpu"} <= set(VALUES_CASES)


@pytest.mark.parametrize("case", VALUES_CASES)
def test_helm_lint_passes_strictly(helm: HelmRunner, case: str) -> None:
    completed = helm.run("lint", "--strict", str(helm.chart), *values_args(case))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "0 chart(s) failed" in completed.stdout


@pytest.fixture(scope="module")
def rendered_files(helm: HelmRunner, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("rendered")
    files = []
    for case in VALUES_CASES:
        completed = helm.template(*values_args(case))
        assert completed.returncode == 0, f"{case}: {completed.stderr}"
        path = out / f"{case}.yaml"
        path.write_text(completed.stdout)
        files.append(path)
    return files


def test_rendered_manifests_validate_against_kubernetes_1_33(rendered_files: list[Path]) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "-k", "1.33.0", "--strict", "--quiet"]
        + [str(p) for p in rendered_files],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "ERROR" not in output
    # It cannot validate kinds it has no schema for; only the ServiceMonitor CRD may be one.
    warnings = [line for line in output.splitlines() if line.startswith("WARN")]
    assert all("kind ServiceMonitor" in line for line in warnings), warnings


@pytest.mark.parametrize("case", VALUES_CASES)
def test_every_resource_uses_a_served_ga_api_version(rendered_files: list[Path], case: str) -> None:
    manifests = Manifests.parse(next(p for p in rendered_files if p.stem == case).read_text())
    kinds = {(d["apiVersion"], d["kind"]) for d in manifests.documents}
    assert kinds <= ALLOWED_API_VERSIONS, kinds - ALLOWED_API_VERSIONS


@pytest.mark.parametrize("case", ["default", "full"])
def test_resource_names_fit_dns_labels_for_the_longest_release_name(
    helm: HelmRunner, case: str
) -> None:
    longest_release = "r" * 53  # helm's own limit
    completed = helm.template(*values_args(case), release=longest_release)
    assert completed.returncode == 0, completed.stderr
    for document in Manifests.parse(completed.stdout).documents:
        assert len(document["metadata"]["name"]) <= 63, document["metadata"]["name"]


def test_notes_show_a_streaming_curl_example(helm: HelmRunner) -> None:
    completed = helm.run("install", "release", str(helm.chart), "--dry-run=client")
    assert completed.returncode == 0, completed.stderr
    notes = completed.stdout.split("NOTES:", 1)[1]
    assert "curl -N" in notes
    assert '"stream": true' in notes
    assert "helm test release" in notes
