"""deploy/k8s rendered by kustomize, validated offline, and held against the code it runs.

Every overlay is rendered with ``kubectl kustomize`` and every object validated with
kubernetes-validate in strict mode for Kubernetes 1.30. Then what a schema cannot know:
each webook container runs a module of this repository with settings its settings class
accepts, probes the port it serves, runs non-root on a read-only root filesystem with
requests and limits; every reference (ConfigMap, Secret, Service, ServiceAccount) resolves
or is a Secret that docs/operations.md tells operators to create.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from devstack.catalog import CATALOG, SERVICE_NAMES
from devstack.suite import available_services
from kit.config import BaseServiceSettings
from tests.deploy.observability_files import DASHBOARD_DIR, PROMETHEUS_DIR, ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.30.0"
GATEWAY = "gateway"
AUTOSCALED = {GATEWAY, "article", "interactive", "comment", "follow", "search"}
WITH_DATABASE = {spec.name for spec in CATALOG if spec.migrations}
SERVICES = SERVICE_NAMES
# Secrets that operators create (docs/operations.md, "Secrets"); the dev overlay generates them.
OPERATOR_SECRETS = {
    "mysql-root",
    "mysql-init",
    "grafana-admin",
    "webook-tls",
    *(f"webook-{name}-secrets" for name in (GATEWAY, *SERVICES)),
}
# Settings the manifests set that the code does not read yet, and why each is needed; the
# test below fails once one of them exists, so that it is removed from this list.
PENDING_SETTINGS: dict[str, str] = {}

Manifest = dict[str, Any]


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise AssertionError(
            "kubectl is not installed: `kubectl kustomize` renders deploy/k8s "
            "(apt-get install kubectl; .ci/run tries)"
        )
    return found


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


_RENDERED: dict[str, list[Manifest]] = {}


def rendered(overlay: str) -> list[Manifest]:
    """The objects ``kubectl kustomize`` renders for an overlay (cached per session)."""
    if overlay not in _RENDERED:
        result = subprocess.run(
            [_kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        _RENDERED[overlay] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return _RENDERED[overlay]


def _of_kind(objects: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _webook_deployments(objects: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for name, deployment in _of_kind(objects, "Deployment").items():
        if name == GATEWAY or name in SERVICES:
            yield name, deployment


def _config_data(objects: list[Manifest], name: str) -> dict[str, str]:
    (config,) = (
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(name)
    )
    return dict(config["data"])


def _secret_data(secret: Manifest) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def _settings_class(name: str) -> type[BaseServiceSettings]:
    module = importlib.import_module(
        "gateway.settings" if name == GATEWAY else f"services.{name}.settings"
    )
    prefix = f"WEBOOK_{name.upper()}_"
    (found,) = (
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseServiceSettings) and cls.model_config.get("env_prefix") == prefix
    )
    return found


def _exists(name: str) -> bool:
    """Whether the process is in this checkout yet (a service is being written elsewhere)."""
    return name == GATEWAY or name in available_services()


def test_every_object_is_valid_for_kubernetes_1_30(overlay: str) -> None:
    objects = rendered(overlay)
    failures = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not failures, "\n".join(failures)
    namespace = {"dev": "webook-dev", "prod": "webook"}[overlay]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace, obj["metadata"]


def test_the_cli_validates_the_rendering_strictly(overlay: str, tmp_path: Path) -> None:
    # The same check as operators would run it: kubernetes-validate --strict on the output.
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all(rendered(overlay)))
    cli = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).parent / "kubernetes-validate"
    )
    result = subprocess.run(
        [cli, "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_gateway_and_every_service_is_deployed(overlay: str) -> None:
    objects = rendered(overlay)
    deployments = dict(_webook_deployments(objects))
    assert set(deployments) == {GATEWAY, *SERVICES}
    services = _of_kind(objects, "Service")
    pdbs = _of_kind(objects, "PodDisruptionBudget")
    hpas = _of_kind(objects, "HorizontalPodAutoscaler")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert services[name]["spec"]["selector"].items() <= labels.items(), name
        assert pdbs[name]["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        if name in AUTOSCALED:
            target = hpas[name]["spec"]["scaleTargetRef"]
            assert (target["kind"], target["name"]) == ("Deployment", name)
            assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns replicas"
        else:
            assert name not in hpas
    assert set(hpas) == AUTOSCALED


def test_webook_containers_are_locked_down_and_sized(overlay: str) -> None:
    for name, deployment in _webook_deployments(rendered(overlay)):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert security["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert security["capabilities"]["drop"] == ["ALL"]
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), name
            assert {"cpu", "memory"} <= resources["limits"].keys(), name
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"


def test_containers_run_modules_of_this_repository(overlay: str) -> None:
    for name, deployment in _webook_deployments(rendered(overlay)):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        module = "gateway" if name == GATEWAY else f"services.{name}"
        assert container["command"] == ["python", "-m", module]
        assert container["image"].rsplit(":", 1)[0].endswith("webook-py")
        if _exists(name):
            assert (ROOT / module.replace(".", "/") / "__main__.py").is_file()
        migrations = [c for c in pod.get("initContainers", []) if c["name"] == "migrate"]
        if name in WITH_DATABASE:
            assert [c["command"] for c in migrations] == [["python", "-m", module, "migrate"]]
            assert (ROOT / module.replace(".", "/") / "migrations").is_dir()


def test_probes_and_scrape_annotations_use_the_ports_the_processes_serve(overlay: str) -> None:
    objects = rendered(overlay)
    config = _config_data(objects, "webook-config")
    for name, deployment in _webook_deployments(objects):
        template = deployment["spec"]["template"]
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        prefix = f"WEBOOK_{name.upper()}_"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            spec = container[probe]
            if name == GATEWAY:
                assert spec["httpGet"]["path"] == "/healthz"
                assert ports[spec["httpGet"]["port"]] == int(config[f"{prefix}PORT"])
            else:
                assert spec["grpc"]["port"] == int(config[f"{prefix}GRPC_PORT"]) == ports["grpc"]
        scraped = int(annotations["prometheus.io/port"])
        if name == GATEWAY:
            assert scraped == int(config[f"{prefix}PORT"])
        else:
            assert scraped == int(config[f"{prefix}METRICS_PORT"]) == ports["metrics"]
            assert config[f"{prefix}GRPC_HOST"] == "0.0.0.0"
            advertise = {e["name"]: e for e in container["env"]}[f"{prefix}ADVERTISE_HOST"]
            assert advertise["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_configured_settings_exist_in_each_process(overlay: str) -> None:
    config = _config_data(rendered(overlay), "webook-config")
    for name in (GATEWAY, *SERVICES):
        if not _exists(name):
            continue
        prefix = f"WEBOOK_{name.upper()}_"
        fields = {f.upper() for f in _settings_class(name).model_fields}
        for key in (k for k in config if k.startswith(prefix)):
            field = key.removeprefix(prefix).split("__")[0]
            if field in PENDING_SETTINGS:
                assert field not in fields, f"{field} exists now: drop it from PENDING_SETTINGS"
                continue
            assert field in fields, f"{key}: {name} has no such setting"


def test_the_dev_overlay_starts_every_process_with_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = rendered("dev")
    config = _config_data(objects, "webook-config")
    secrets = _of_kind(objects, "Secret")
    for name in (GATEWAY, *SERVICES):
        if not _exists(name):
            continue
        secret = next(s for n, s in secrets.items() if n.startswith(f"webook-{name}-secrets"))
        env = {**config, **_secret_data(secret)}
        with monkeypatch.context() as patched:
            for key, value in env.items():
                patched.setenv(key, value)
            settings = _settings_class(name)()
        assert settings.otlp_endpoint == "http://otel-collector:4317"


def test_references_resolve_or_are_documented_secrets(overlay: str) -> None:
    objects = rendered(overlay)
    names = {
        kind: set(_of_kind(objects, kind)) for kind in ("ConfigMap", "Secret", "ServiceAccount")
    }
    docs = (ROOT / "docs" / "operations.md").read_text()
    for obj in objects:
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        pod = obj["spec"]["template"]["spec"]
        wanted: list[tuple[str, str]] = []
        if "serviceAccountName" in pod:
            wanted.append(("ServiceAccount", pod["serviceAccountName"]))
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                wanted.append(("ConfigMap", volume["configMap"]["name"]))
            if "secret" in volume:
                wanted.append(("Secret", volume["secret"]["secretName"]))
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    wanted.append(("ConfigMap", source["configMapRef"]["name"]))
                if "secretRef" in source:
                    wanted.append(("Secret", source["secretRef"]["name"]))
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    wanted.append(("Secret", ref["name"]))
        for kind, name in wanted:
            if name in names[kind]:
                continue
            assert kind == "Secret", f"{obj['metadata']['name']}: no {kind} {name}"
            assert name in OPERATOR_SECRETS, f"{obj['metadata']['name']}: unknown Secret {name}"
            assert f"`{name}`" in docs, f"docs/operations.md does not say how to create {name}"
    for ingress in _of_kind(objects, "Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = _of_kind(objects, "Service")[backend["name"]]
                assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
                assert path["path"] not in {"/", "/metrics"}, "keep /metrics inside the cluster"
    if overlay == "prod":
        assert not names["Secret"], "prod must not carry any credential"


def test_the_infrastructure(overlay: str) -> None:
    objects = rendered(overlay)
    stateful = _of_kind(objects, "StatefulSet")
    assert {"mysql", "redis", "etcd", "kafka", "prometheus"} <= set(stateful)
    etcd = stateful["etcd"]["spec"]
    assert etcd["replicas"] == 3
    args = " ".join(etcd["template"]["spec"]["containers"][0]["args"])
    assert all(f"etcd-{i}=http://etcd-{i}.etcd-headless:2380" in args for i in range(3))
    kafka = stateful["kafka"]["spec"]
    env = {e["name"]: e.get("value") for e in kafka["template"]["spec"]["containers"][0]["env"]}
    assert "controller" in env["KAFKA_PROCESS_ROLES"].split(","), "KRaft: no ZooKeeper"
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert len(voters) == kafka["replicas"]
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) <= kafka["replicas"]
    deployments = _of_kind(objects, "Deployment")
    assert {"grafana", "otel-collector", "jaeger"} <= set(deployments)


def test_grafana_gets_every_dashboard_and_prometheus_its_rules(overlay: str) -> None:
    objects = rendered(overlay)
    dashboards = _config_data(objects, "grafana-dashboards")
    assert set(dashboards) == {p.name for p in DASHBOARD_DIR.glob("*.json")}
    for name, text in dashboards.items():
        assert json.loads(text) == json.loads((DASHBOARD_DIR / name).read_text())
    prometheus = _config_data(objects, "prometheus-config")
    assert set(prometheus) == {"prometheus.yml", "alerts.yml"}
    assert prometheus["alerts.yml"] == (PROMETHEUS_DIR / "alerts.yml").read_text()
    assert prometheus["prometheus.yml"] == (PROMETHEUS_DIR / "kubernetes.yml").read_text()
    scrape = yaml.safe_load(prometheus["prometheus.yml"])["scrape_configs"][0]
    job = next(r for r in scrape["relabel_configs"] if r.get("target_label") == "job")
    assert job["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]


def test_the_collector_exports_traces_to_jaeger(overlay: str) -> None:
    objects = rendered(overlay)
    config = yaml.safe_load(_config_data(objects, "otel-collector-config")["config.yaml"])
    pipeline = config["service"]["pipelines"]["traces"]
    for section in ("receivers", "processors", "exporters"):
        assert set(pipeline[section]) <= set(config[section]), section
    (exporter,) = (config["exporters"][e] for e in pipeline["exporters"])
    host, port = exporter["endpoint"].split(":")
    jaeger = _of_kind(objects, "Service")[host]
    assert int(port) in {p["port"] for p in jaeger["spec"]["ports"]}
    collector = _of_kind(objects, "Service")["otel-collector"]
    endpoint = _config_data(objects, "webook-config")["WEBOOK_GATEWAY_OTLP_ENDPOINT"]
    assert endpoint == "http://otel-collector:4317"
    assert 4317 in {p["port"] for p in collector["spec"]["ports"]}
