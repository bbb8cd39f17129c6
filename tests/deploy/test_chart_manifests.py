"""Assertions on the rendered chart: what the server really listens on, serves and needs."""

from __future__ import annotations

import math
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy._helm import CHART, VALUES_CASES, HelmRunner, Manifests, values_args
from tokenwire.cli import build_middlewares, make_parser
from tokenwire.config import ServeConfig
from tokenwire.plugins import list_plugins

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

# server.py: aborted streams get this long to flush their in-band error before the stop.
ABORT_FLUSH_SECONDS = 1.0


@pytest.fixture(scope="module", params=VALUES_CASES)
def case(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def manifests(helm: HelmRunner, case: str) -> Manifests:
    """The chart rendered once per values file (with the ServiceMonitor API available)."""
    return helm.render(*values_args(case))


def server_toml(manifests: Manifests) -> dict[str, Any]:
    config_map = manifests.one("ConfigMap")
    parsed: dict[str, Any] = tomllib.loads(config_map["data"]["tokenwire.toml"])
    return parsed


def serve_args(manifests: Manifests) -> Any:
    container = manifests.server_container()
    assert "command" not in container, "the image's ENTRYPOINT (tokenwire) must stay"
    return make_parser().parse_args(container["args"])


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, resolved through the container's named ports."""
    if isinstance(port, int):
        return port
    number: int = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
    return number


def mount_holding(container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mount a path lies in: the longest mount path that contains it."""
    holding = [
        m for m in container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert holding, f"{path} is on no volume of {container['name']}"
    return max(holding, key=lambda m: len(m["mountPath"]))


def mounts_by_path(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", ())}


# ---- ports and probes ----------------------------------------------------------------------------


def test_container_port_equals_the_port_the_server_is_started_with(manifests: Manifests) -> None:
    args = serve_args(manifests)
    assert args.command == "serve"
    assert args.host == "0.0.0.0"
    container = manifests.server_container()
    assert [p["containerPort"] for p in container["ports"]] == [args.port]
    # The config file agrees with the flag, so reading either gives the same port.
    assert server_toml(manifests)["port"] == args.port


def test_probes_hit_the_health_endpoints_on_the_container_port(manifests: Manifests) -> None:
    container = manifests.server_container()
    port = serve_args(manifests).port
    expected = {
        "startupProbe": "/health/live",
        "livenessProbe": "/health/live",
        "readinessProbe": "/health/ready",
    }
    for probe_name, path in expected.items():
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == path, probe_name
        assert container_port(container, probe["port"]) == port, probe_name


def test_service_targets_the_container_port(manifests: Manifests) -> None:
    service = manifests.one("Service")
    (service_port,) = service["spec"]["ports"]
    container = manifests.server_container()
    assert container_port(container, service_port["targetPort"]) == serve_args(manifests).port
    pod_labels = manifests.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_changing_the_port_moves_listener_probes_and_service_together(helm: HelmRunner) -> None:
    manifests = helm.render("--set", "server.port=9123")
    container = manifests.server_container()
    assert serve_args(manifests).port == 9123
    assert container["ports"][0]["containerPort"] == 9123
    assert container_port(container, container["readinessProbe"]["httpGet"]["port"]) == 9123
    assert server_toml(manifests)["port"] == 9123


# ---- the timeout chain -------------------------------------------------------------------------------


def test_timeout_chain_holds(manifests: Manifests) -> None:
    config = server_toml(manifests)
    pod = manifests.pod_spec()
    container = manifests.server_container()
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(config["drain_grace"])
    # uvicorn takes whole seconds (server.py rounds up).
    server_stop = drain + math.ceil(config["shutdown_timeout"]) + ABORT_FLUSH_SECONDS
    assert pre_stop > 0, "without a preStop delay the drain starts while traffic still arrives"
    assert drain < server_stop
    assert pre_stop + server_stop < pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"terminationGracePeriodSeconds": 30},  # 5 + 20 + 5 + 1 = 31
        {"server": {"drainGraceSeconds": 120}},
        {"preStopSleepSeconds": 20},
        {"server": {"shutdownTimeoutSeconds": 14.2}},  # rounded up to 15: 5 + 20 + 15 + 1 > 40
    ],
)
def test_values_that_break_the_timeout_chain_fail_to_render(
    helm: HelmRunner, tmp_path: Path, overrides: dict[str, Any]
) -> None:
    values = tmp_path / "broken-values.yaml"
    values.write_text(yaml.safe_dump(overrides))
    completed = helm.template("--values", str(values))
    assert completed.returncode != 0
    assert "timeout chain broken" in completed.stderr


def test_a_zero_shutdown_timeout_is_refused(helm: HelmRunner) -> None:
    completed = helm.template("--set", "server.shutdownTimeoutSeconds=0")
    assert completed.returncode != 0
    assert "shutdownTimeoutSeconds" in completed.stderr


# ---- security ------------------------------------------------------------------------------------


def test_pods_run_non_root_with_runtime_default_seccomp(manifests: Manifests) -> None:
    pod_context = manifests.pod_spec()["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] != 0
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert manifests.pod_spec()["automountServiceAccountToken"] is False


def test_every_container_is_locked_down(manifests: Manifests) -> None:
    test_pods = [
        d for d in manifests.of_kind("Pod") if "helm.sh/hook" in d["metadata"]["annotations"]
    ]
    containers = [
        *manifests.all_containers(),
        *(c for p in test_pods for c in p["spec"]["containers"]),
    ]
    assert len(containers) >= 2
    for container in containers:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert "add" not in context["capabilities"], container["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]


def test_writable_tmp_and_tokenwire_home_are_mounted_volumes(manifests: Manifests) -> None:
    volumes = {v["name"]: v for v in manifests.pod_spec()["volumes"]}
    for container in manifests.all_containers():
        mounts = mounts_by_path(container)
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]], container["name"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        home = mounts[env["TOKENWIRE_HOME"]]
        assert not home.get("readOnly", False), container["name"]
        assert env["HOME"] == "/tmp", "libraries cache under $HOME; the root is read-only"


def test_image_tag_is_pinned_never_latest(manifests: Manifests) -> None:
    images = [c["image"] for c in manifests.all_containers()]
    images += [c["image"] for p in manifests.of_kind("Pod") for c in p["spec"]["containers"]]
    for image in images:
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, image
        assert tag and tag != "latest", image


def test_default_image_tag_is_the_charts_app_version(helm: HelmRunner) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    default_image = helm.render().server_container()["image"]
    assert default_image.endswith(f":{chart['appVersion']}")
    gpu_image = helm.render("--set", "image.variant=gpu").server_container()["image"]
    assert gpu_image.endswith(f":{chart['appVersion']}-gpu")


@pytest.mark.parametrize("tag", ["latest"])
def test_a_latest_image_tag_is_refused(helm: HelmRunner, tag: str) -> None:
    completed = helm.template("--set", f"image.tag={tag}")
    assert completed.returncode != 0


# ---- the server's config ---------------------------------------------------------------------------


def test_config_toml_has_only_serve_config_keys_and_loads(
    manifests: Manifests, tmp_path: Path
) -> None:
    config = server_toml(manifests)
    known = {f.name for f in fields(ServeConfig)}
    assert set(config) <= known, set(config) - known
    path = tmp_path / "tokenwire.toml"
    path.write_text(manifests.one("ConfigMap")["data"]["tokenwire.toml"])
    loaded = ServeConfig.from_file(path)
    assert loaded.backend in list_plugins("backends")
    assert set(loaded.middlewares) <= set(list_plugins("middlewares"))


def test_config_changes_roll_the_pods(helm: HelmRunner) -> None:
    def checksum(*args: str) -> str:
        template = helm.render(*args).one("Deployment")["spec"]["template"]
        value: str = template["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum() != checksum("--set", "server.logLevel=debug")


# ---- model provisioning ----------------------------------------------------------------------------


def test_default_model_is_prepared_by_an_init_container_into_a_shared_empty_dir(
    helm: HelmRunner,
) -> None:
    manifests = helm.render()
    pod = manifests.pod_spec()
    (init,) = pod["initContainers"]
    prepare = make_parser().parse_args(init["args"])
    assert prepare.command == "prepare"
    model_dir = server_toml(manifests)["model"]
    assert str(prepare.output) == model_dir
    volumes = {v["name"]: v for v in pod["volumes"]}
    init_mount = mount_holding(init, model_dir)
    assert "emptyDir" in volumes[init_mount["name"]]
    assert not init_mount.get("readOnly", False)
    # The server sees the same volume at the same path, read-only.
    server_mount = mount_holding(manifests.server_container(), model_dir)
    assert server_mount == server_mount | {
        "name": init_mount["name"],
        "mountPath": init_mount["mountPath"],
    }
    assert server_mount["readOnly"] is True


def test_existing_claim_serves_a_prepared_model_without_preparing(helm: HelmRunner) -> None:
    manifests = helm.render(*values_args("existing-pvc"))
    pod = manifests.pod_spec()
    assert "initContainers" not in pod
    claim_volumes = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert [v["persistentVolumeClaim"]["claimName"] for v in claim_volumes] == ["tokenwire-models"]
    model_dir = server_toml(manifests)["model"]
    assert model_dir.endswith("/smollm2-135m-instruct-int4")
    mount = mount_holding(manifests.server_container(), model_dir)
    assert mount["name"] == claim_volumes[0]["name"]
    assert mount["subPath"] == "models"
    assert mount["readOnly"] is True


def test_existing_claim_without_a_claim_name_fails_to_render(helm: HelmRunner) -> None:
    completed = helm.template("--set", "model.source=existingClaim")
    assert completed.returncode != 0
    assert "claimName" in completed.stderr


def test_model_free_backends_get_no_model_or_model_volume(helm: HelmRunner) -> None:
    manifests = helm.render(*values_args("minimal"))
    assert "model" not in server_toml(manifests)
    assert "initContainers" not in manifests.pod_spec()
    assert "models" not in {v["name"] for v in manifests.pod_spec()["volumes"]}


def test_gpu_values_request_a_gpu_and_the_cuda_device(helm: HelmRunner) -> None:
    manifests = helm.render(*values_args("gpu"))
    assert manifests.server_container()["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server_toml(manifests)["backend_options"]["device"] == "cuda"
    assert manifests.server_container()["image"].endswith("-gpu")


def test_middleware_options_reach_the_server_config(helm: HelmRunner, tmp_path: Path) -> None:
    manifests = helm.render(
        "--set", "server.middlewares={metrics,cancellation}",
        "--set", "server.middlewareOptions.cancellation.default_timeout=120",
        "--set", "server.middlewareOptions.cancellation.max_timeout=900",
    )  # fmt: skip
    path = tmp_path / "tokenwire.toml"
    path.write_text(manifests.one("ConfigMap")["data"]["tokenwire.toml"])
    config = ServeConfig.from_file(path)
    assert config.middleware_options == {
        "cancellation": {"default_timeout": 120, "max_timeout": 900},
    }
    assert len(build_middlewares(config)) == 2  # each accepts its options


# ---- optional resources -------------------------------------------------------------------------


def test_service_monitor_renders_only_when_enabled_and_the_api_exists(helm: HelmRunner) -> None:
    full = values_args("full")
    with_api = helm.render(*full).of_kind("ServiceMonitor")
    without_api = helm.render(*full, api_versions=()).of_kind("ServiceMonitor")
    disabled = helm.render().of_kind("ServiceMonitor")
    assert len(with_api) == 1
    assert without_api == []
    assert disabled == []
    (endpoint,) = with_api[0]["spec"]["endpoints"]
    assert endpoint == endpoint | {"port": "http", "path": "/metrics"}


def test_service_monitor_without_the_metrics_middleware_fails_to_render(helm: HelmRunner) -> None:
    completed = helm.template(
        "--set", "serviceMonitor.enabled=true", "--set", "server.middlewares=null"
    )
    assert completed.returncode != 0
    assert "metrics" in completed.stderr


def test_ingress_turns_off_buffering_and_raises_timeouts_for_streams(helm: HelmRunner) -> None:
    manifests = helm.render(*values_args("full"))
    ingress = manifests.one("Ingress")
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "proxy-buffering"] == "off"
    assert annotations[prefix + "proxy-request-buffering"] == "off"
    assert int(annotations[prefix + "proxy-read-timeout"]) >= 3600
    assert int(annotations[prefix + "proxy-send-timeout"]) >= 3600
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"  # user's kept
    # Proxy timeouts must outlast the SSE keep-alive interval, or idle streams get cut.
    assert (
        int(annotations[prefix + "proxy-read-timeout"])
        > server_toml(manifests)["keepalive_seconds"]
    )
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == manifests.one("Service")["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in manifests.one("Service")["spec"]["ports"]}


def test_user_annotations_override_the_streaming_ones(helm: HelmRunner) -> None:
    key = "nginx.ingress.kubernetes.io/proxy-read-timeout"
    manifests = helm.render(
        "--set",
        "ingress.enabled=true",
        "--set-string",
        f"ingress.annotations.{key.replace('.', chr(92) + '.')}=86400",
    )
    assert manifests.one("Ingress")["metadata"]["annotations"][key] == "86400"


def test_hpa_scales_on_cpu_by_default_and_on_queue_depth_when_asked(helm: HelmRunner) -> None:
    assert helm.render().of_kind("HorizontalPodAutoscaler") == []
    cpu_only = helm.render("--set", "autoscaling.enabled=true").one("HorizontalPodAutoscaler")
    assert [m["resource"]["name"] for m in cpu_only["spec"]["metrics"]] == ["cpu"]
    manifests = helm.render(*values_args("full"))
    hpa = manifests.one("HorizontalPodAutoscaler")
    pods_metrics = [
        m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"
    ]
    assert pods_metrics == ["tokenwire_requests_waiting"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == manifests.one("Deployment")["metadata"]["name"]
    # With an HPA the Deployment leaves the replica count alone, or every upgrade resets it.
    assert "replicas" not in manifests.one("Deployment")["spec"]


def test_pod_disruption_budget_selects_the_server_pods(manifests: Manifests) -> None:
    budgets = manifests.of_kind("PodDisruptionBudget")
    if not budgets:
        return  # disabled in this values file
    pod_labels = manifests.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budgets[0]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_helm_test_pod_checks_the_service_and_is_not_behind_it(manifests: Manifests) -> None:
    (test_pod,) = manifests.of_kind("Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = manifests.one("Service")
    selector = service["spec"]["selector"].items()
    assert not selector <= test_pod["metadata"]["labels"].items()
    url = test_pod["spec"]["containers"][0]["command"][-1]
    assert url == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"


KEDA_API = "keda.sh/v1alpha1"


def test_keda_scales_on_the_waiting_gauge_through_prometheus(helm: HelmRunner) -> None:
    manifests = helm.render("--set", "keda.enabled=true", api_versions=(KEDA_API,))
    scaled = manifests.one("ScaledObject")
    assert scaled["apiVersion"] == KEDA_API
    deployment = manifests.one("Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 4)
    (trigger,) = scaled["spec"]["triggers"]
    assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue")
    query = trigger["metadata"]["query"]
    assert query.startswith("sum(vllm:num_requests_waiting{")
    assert f'service="{deployment["metadata"]["name"]}"' in query
    assert trigger["metadata"]["threshold"] == "2"
    # KEDA owns the replica count, as an HPA would; the chart's own HPA stays off.
    assert "replicas" not in deployment["spec"]
    assert manifests.of_kind("HorizontalPodAutoscaler") == []
    own = helm.render(
        "--set",
        "keda.enabled=true",
        "--set",
        "keda.prometheus.query=sum(tokenwire_requests_waiting)",
        api_versions=(KEDA_API,),
    )
    (trigger,) = own.one("ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["query"] == "sum(tokenwire_requests_waiting)"


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        (("keda.enabled=true", "autoscaling.enabled=true"), "exclude each other"),
        (("keda.enabled=true", "server.middlewares={cancellation}"), "metrics"),
        (("inferencePool.enabled=true", "server.middlewares={cancellation}"), "metrics"),
    ],
)
def test_keda_and_inference_pool_refuse_values_that_cannot_work(
    helm: HelmRunner, settings: tuple[str, ...], complaint: str
) -> None:
    args = [arg for setting in settings for arg in ("--set", setting)]
    completed = helm.template(*args, api_versions=(KEDA_API,))
    assert completed.returncode != 0
    assert complaint in completed.stderr


def test_keda_without_its_api_fails_instead_of_leaving_the_pods_unscaled(helm: HelmRunner) -> None:
    completed = helm.template("--set", "keda.enabled=true")
    assert completed.returncode != 0
    assert KEDA_API in completed.stderr


def test_inference_pool_labels_pods_for_the_endpoint_picker(helm: HelmRunner) -> None:
    assert (
        "llm-d.ai/engine-type"
        not in helm.render().one("Deployment")["spec"]["template"]["metadata"]["labels"]
    )
    manifests = helm.render("--set", "inferencePool.enabled=true")
    deployment = manifests.one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["llm-d.ai/engine-type"] == "vllm"
    assert labels["llm-d.ai/model"] == "smollm2-135m-instruct-int8"
    # The pool's labels never join the Deployment's selector (immutable across upgrades).
    assert not any(k.startswith("llm-d.ai/") for k in deployment["spec"]["selector"]["matchLabels"])
    full = helm.render(*values_args("full")).one("Deployment")["spec"]["template"]["metadata"]
    assert full["labels"]["llm-d.ai/inference-serving"] == "true"
    assert "llm-d.ai/model" not in full["labels"]


def test_stream_store_url_comes_from_the_existing_secret_as_an_env_var(helm: HelmRunner) -> None:
    env = {e["name"]: e for e in helm.render().server_container()["env"]}
    assert "TOKENWIRE_STREAM_STORE" not in env
    container = helm.render(
        "--set",
        "streamStore.redis.existingSecret=redis-creds",
        "--set",
        "streamStore.redis.key=uri",
    ).server_container()
    env = {e["name"]: e for e in container["env"]}
    ref = env["TOKENWIRE_STREAM_STORE"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "redis-creds", "key": "uri"}
    assert "value" not in env["TOKENWIRE_STREAM_STORE"]
