"""deploy/k8s rendered by kustomize, validated offline, and held against the code it runs.

Every overlay is rendered with ``kubectl kustomize`` and every object validated with
kubernetes-validate in strict mode for Kubernetes 1.30 (cert-manager's objects, which it
has no schema for, against the fields of cert-manager's v1 API). Then what a schema cannot
know: each webook container runs a module of this repository with settings its settings
class accepts, probes the port it serves, runs non-root on a read-only root filesystem with
requests and limits; every reference (ConfigMap, Secret, Service, ServiceAccount) resolves
or is a Secret that docs/operations.md tells operators to create or that cert-manager makes.

Mutual TLS and network policies (docs/security.md): every webook process reads its own
certificate, from the Secret of a cert-manager Certificate naming it, mounted read-only;
the Certificates chain to a CA Issuer bootstrapped by a self-signed one; and, evaluated as
a NetworkPolicy implementation would, the policies allow exactly the connections of
:data:`GRPC_CALLS`, :data:`INFRASTRUCTURE`, Prometheus's scrapes and the infrastructure's
own traffic — nothing more, nothing less.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from devstack.catalog import CATALOG, SERVICE_NAMES
from devstack.suite import available_services
from kit.config import BaseServiceSettings
from kit.security.identity import dns_name, spiffe_id
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
# Custom resources kubernetes-validate has no schema for: their kinds, and the fields each
# spec may use (cert-manager.io/v1, https://cert-manager.io/docs/reference/api-docs/).
CUSTOM_RESOURCES: dict[tuple[str, str], set[str]] = {
    ("cert-manager.io/v1", "Issuer"): {"selfSigned", "ca", "acme", "vault", "venafi"},
    ("cert-manager.io/v1", "Certificate"): {
        "secretName",
        "secretTemplate",
        "issuerRef",
        "commonName",
        "dnsNames",
        "uris",
        "ipAddresses",
        "emailAddresses",
        "usages",
        "duration",
        "renewBefore",
        "privateKey",
        "isCA",
        "subject",
        "revisionHistoryLimit",
    },
}
# Where a pod mounts its workload's certificate Secret, and the files the settings name.
TLS_FILES = {"CERT": "tls.crt", "KEY": "tls.key", "CA": "ca.crt"}
# Who calls whom over gRPC (services/*/peers.py; the gateway calls every service). The
# network policies must allow exactly these calls to the callee's "grpc" port.
GRPC_CALLS: dict[str, set[str]] = {
    GATEWAY: set(SERVICES),
    "article": {"user", "follow", "interactive"},
    "search": {"article", "user"},
}
# The infrastructure each webook process connects to, and the named port it uses.
INFRA_PORTS = {
    "mysql": "mysql",
    "redis": "redis",
    "kafka": "kafka",
    "etcd": "client",
    "otel-collector": "otlp-grpc",
}
_TELEMETRY = {"etcd", "otel-collector"}
INFRASTRUCTURE: dict[str, set[str]] = {
    GATEWAY: {"redis", *_TELEMETRY},
    "user": {"mysql", "redis", "kafka", *_TELEMETRY},
    "sms": {"mysql", "redis", *_TELEMETRY},
    "article": {"mysql", "redis", "kafka", *_TELEMETRY},
    "interactive": {"mysql", "redis", "kafka", *_TELEMETRY},
    "comment": {"mysql", "redis", *_TELEMETRY},
    "follow": {"mysql", "redis", *_TELEMETRY},
    "search": {"kafka", *_TELEMETRY},
}
# Connections among the infrastructure and observability pods: (from, to, named port).
INFRA_TRAFFIC = {
    ("etcd", "etcd", "client"),
    ("etcd", "etcd", "peer"),
    ("kafka", "kafka", "kafka"),
    ("kafka", "kafka", "controller"),
    ("otel-collector", "jaeger", "otlp-grpc"),
    ("grafana", "prometheus", "http"),
}

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
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES:
            continue  # test_cert_manager_objects_use_only_fields_of_its_api
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
                # The plaintext health-only port: kubelet presents no client certificate.
                probe_port = int(config[f"{prefix}GRPC_PROBE_PORT"])
                assert spec["grpc"]["port"] == probe_port == ports["probe"], (name, probe)
                assert probe_port != int(config[f"{prefix}GRPC_PORT"]) == ports["grpc"]
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
    # Secrets cert-manager writes for the Certificates of the rendering.
    made = {c["spec"]["secretName"] for c in _of_kind(objects, "Certificate").values()}
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
            if name in names[kind] or (kind == "Secret" and name in made):
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


# -- mutual TLS ---------------------------------------------------------------------------


def _duration_seconds(text: str) -> int:
    """A Go duration of hours, minutes and seconds (``"720h"``, ``"1h30m"``) in seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    assert text, "empty duration"
    assert parts, f"not a duration: {text!r}"
    hours, minutes, seconds = (int(p or 0) for p in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def test_cert_manager_objects_use_only_fields_of_its_api(overlay: str) -> None:
    objects = rendered(overlay)
    kinds = {(o["apiVersion"], o["kind"]) for o in objects}
    assert set(CUSTOM_RESOURCES) <= kinds
    for obj in objects:
        allowed = CUSTOM_RESOURCES.get((obj["apiVersion"], obj["kind"]))
        if allowed is None:
            continue
        label = f"{obj['kind']}/{obj['metadata']['name']}"
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}, label
        assert set(obj["spec"]) <= allowed, (label, set(obj["spec"]) - allowed)
        if obj["kind"] == "Issuer":
            assert len(obj["spec"]) == 1, f"{label}: exactly one issuer type"
        else:
            ref = obj["spec"]["issuerRef"]
            assert ref == {"group": "cert-manager.io", "kind": "Issuer", "name": ref["name"]}
            assert obj["spec"]["privateKey"]["rotationPolicy"] == "Always", label


def _certificates(objects: list[Manifest]) -> dict[str, Manifest]:
    """The workload Certificates by the workload they name."""
    found = {}
    for cert in _of_kind(objects, "Certificate").values():
        if not cert["spec"].get("isCA"):
            found[cert["metadata"]["labels"]["app.kubernetes.io/name"]] = cert
    return found


def test_every_workload_has_a_certificate_naming_it_from_the_namespace_ca(overlay: str) -> None:
    objects = rendered(overlay)
    issuers = _of_kind(objects, "Issuer")
    certificates = _certificates(objects)
    assert set(certificates) == {GATEWAY, *SERVICES}
    ca_secrets = set()
    for name, cert in certificates.items():
        spec = cert["spec"]
        assert spec["uris"] == [spiffe_id(name)], name
        assert spec["dnsNames"] == [dns_name(name)], name
        assert {"server auth", "client auth"} <= set(spec["usages"]), name
        assert 0 < _duration_seconds(spec["renewBefore"]) < _duration_seconds(spec["duration"])
        assert spec["secretName"] == f"{name}-tls"
        issuer = issuers[spec["issuerRef"]["name"]]["spec"]
        ca_secrets.add(issuer["ca"]["secretName"])
    # One CA for all: a Secret written by an isCA Certificate of a self-signed Issuer.
    (ca_secret,) = ca_secrets
    (ca,) = (c for c in _of_kind(objects, "Certificate").values() if c["spec"].get("isCA"))
    assert ca["spec"]["secretName"] == ca_secret
    assert issuers[ca["spec"]["issuerRef"]["name"]]["spec"] == {"selfSigned": {}}


def test_every_webook_process_reads_its_own_certificate_mounted_read_only(overlay: str) -> None:
    objects = rendered(overlay)
    config = _config_data(objects, "webook-config")
    certificates = _certificates(objects)
    for name, deployment in _webook_deployments(objects):
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        prefix = f"WEBOOK_{name.upper()}_"
        # The migrations too: prod mode refuses to start without the TLS settings.
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            label = (name, container["name"])
            refs = [s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s]
            assert any(ref.startswith("webook-config") for ref in refs), label
            env = {
                **config,
                **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
            }
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            for setting, file_name in TLS_FILES.items():
                path = PurePosixPath(env[f"{prefix}TLS_{setting}_FILE"])
                assert path.name == file_name, (label, setting)
                mount = mounts[str(path.parent)]
                # A subPath mount would never see a renewed certificate.
                assert mount.get("readOnly") is True, label
                assert "subPath" not in mount, label
                secret = volumes[mount["name"]]["secret"]
                assert secret["secretName"] == certificates[name]["spec"]["secretName"], label
                assert secret["defaultMode"] & 0o077 == 0o040, f"{label}: group-read only"


# -- network policies ---------------------------------------------------------------------


Pod = tuple[dict[str, str], dict[str, tuple[int, str]]]
"""A pod template: its labels, and its container ports by name (number, protocol)."""


def _pods(objects: list[Manifest]) -> dict[str, Pod]:
    pods: dict[str, Pod] = {}
    for obj in objects:
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        template = obj["spec"]["template"]
        ports = {
            p["name"]: (p["containerPort"], p.get("protocol", "TCP"))
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
        }
        pods[obj["metadata"]["name"]] = (template["metadata"]["labels"], ports)
    return pods


def _selects(selector: Manifest, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "the evaluator knows matchLabels only"
    return bool(selector.get("matchLabels", {}).items() <= labels.items())


def _peer_matches(peers: list[Manifest] | None, labels: dict[str, str]) -> bool:
    """Whether a rule's from/to admits a pod of this namespace (no list: everything)."""
    if peers is None:
        return True
    # A namespaceSelector or an ipBlock peer names what is outside the namespace.
    return any(set(p) == {"podSelector"} and _selects(p["podSelector"], labels) for p in peers)


def _port_matches(rule_ports: list[Manifest] | None, pod: Pod, port_name: str) -> bool:
    if rule_ports is None:
        return True
    number, protocol = pod[1][port_name]
    return any(
        p.get("protocol", "TCP") == protocol and p.get("port") in {None, number, port_name}
        for p in rule_ports
    )


def _allowed(
    policies: list[Manifest], direction: str, subject: Pod, other: Pod, target: Pod, port_name: str
) -> bool:
    """Whether the policies selecting ``subject`` let it send (Egress) to or receive (Ingress)
    from ``other`` on ``target``'s port; a pod no policy of that type selects is open."""
    selecting = [
        p
        for p in policies
        if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], subject[0])
    ]
    key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    return not selecting or any(
        _peer_matches(rule.get(peers), other[0])
        and _port_matches(rule.get("ports"), target, port_name)
        for policy in selecting
        for rule in policy["spec"].get(key, [])
    )


def _connections(objects: list[Manifest]) -> set[tuple[str, str, str]]:
    """Every (from pod, to pod, named port) of the namespace the policies let through."""
    policies = list(_of_kind(objects, "NetworkPolicy").values())
    pods = _pods(objects)
    return {
        (source, target, port)
        for source, src in pods.items()
        for target, dst in pods.items()
        for port in dst[1]
        if _allowed(policies, "Egress", src, dst, dst, port)
        and _allowed(policies, "Ingress", dst, src, dst, port)
    }


def _scrapes(objects: list[Manifest]) -> set[tuple[str, str, str]]:
    """Prometheus → each pod annotated for scraping, on the annotated port."""
    found = set()
    for name, (_, ports) in _pods(objects).items():
        obj = next(
            o for o in objects if o["metadata"]["name"] == name and "template" in o.get("spec", {})
        )
        annotations = obj["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            port = int(annotations["prometheus.io/port"])
            found |= {("prometheus", name, p) for p, (n, _) in ports.items() if n == port}
    return found


def test_the_call_graph_table_matches_the_catalog() -> None:
    assert {e.name: set(e.peers) for e in CATALOG if e.peers} == {
        name: callees for name, callees in GRPC_CALLS.items() if name != GATEWAY
    }
    assert set(INFRASTRUCTURE) == {GATEWAY, *SERVICES}


def test_the_namespace_denies_by_default_and_allows_dns(overlay: str) -> None:
    policies = _of_kind(rendered(overlay), "NetworkPolicy")
    deny = [p for p in policies.values() if p["spec"]["podSelector"] == {}]
    assert any(
        set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in deny
    ), "no default-deny policy"
    dns = [rule for p in deny for rule in p["spec"].get("egress", [])]
    assert any({"port": 53, "protocol": "UDP"} in rule["ports"] for rule in dns)


def test_one_policy_per_workload_matching_its_pods(overlay: str) -> None:
    objects = rendered(overlay)
    pods = _pods(objects)
    for name, policy in _of_kind(objects, "NetworkPolicy").items():
        selector = policy["spec"]["podSelector"]
        if selector == {}:
            continue
        selected = [pod for pod, (labels, _) in pods.items() if _selects(selector, labels)]
        assert selected == [name], f"policy {name} selects {selected}"
    assert set(pods) <= set(_of_kind(objects, "NetworkPolicy"))


def test_policies_allow_exactly_the_connections_the_workloads_make(overlay: str) -> None:
    objects = rendered(overlay)
    expected = {
        (caller, callee, "grpc") for caller, callees in GRPC_CALLS.items() for callee in callees
    }
    expected |= {
        (name, infra, INFRA_PORTS[infra]) for name, used in INFRASTRUCTURE.items() for infra in used
    }
    expected |= _scrapes(objects) | INFRA_TRAFFIC
    assert {("prometheus", name, "metrics") for name in SERVICES} <= expected
    allowed = _connections(objects)
    assert not allowed - expected, f"allowed but not made: {sorted(allowed - expected)}"
    assert not expected - allowed, f"made but not allowed: {sorted(expected - allowed)}"


def test_only_the_gateway_is_open_to_the_outside(overlay: str) -> None:
    for name, policy in _of_kind(rendered(overlay), "NetworkPolicy").items():
        for rule in policy["spec"].get("ingress", []):
            outside = "from" not in rule or any(set(p) != {"podSelector"} for p in rule["from"])
            if outside:
                # The ingress controller runs in a namespace of its own.
                assert (name, rule.get("ports")) == (GATEWAY, [{"port": "http", "protocol": "TCP"}])


CREDENTIAL_TEMPLATES = K8S / "base" / "credentials" / "webook-secrets.example.yaml"


def test_the_credential_templates_hold_placeholders_for_every_workload() -> None:
    secrets = {
        doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(CREDENTIAL_TEMPLATES.read_text())
    }
    assert set(secrets) == {f"webook-{name}-secrets" for name in (GATEWAY, *SERVICES)}
    for name in (GATEWAY, *SERVICES):
        data: dict[str, str] = secrets[f"webook-{name}-secrets"]["stringData"]
        prefix = f"WEBOOK_{name.upper()}_"
        assert data[f"{prefix}ETCD_USERNAME"] == name
        wanted = {"ETCD_PASSWORD", "REDIS_URL"} | (
            {"DATABASE_URL", "KAFKA_SASL_PASSWORD"} if name != GATEWAY else set()
        )
        for key in wanted:
            assert "REPLACE_ME" in data[prefix + key], f"{name}: {key} is not a placeholder"
        settings = _settings_class(name).model_fields
        assert all(key.removeprefix(prefix).lower() in settings for key in data)


def test_prod_services_talk_to_kafka_over_sasl_ssl() -> None:
    # The dev overlay's broker runs without authentication.
    config = _config_data(rendered("prod"), "webook-config")
    for name in SERVICES:
        prefix = f"WEBOOK_{name.upper()}_"
        assert config[f"{prefix}KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert config[f"{prefix}KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert config[f"{prefix}KAFKA_SASL_USERNAME"] == name
