"""The infrastructure's metrics and alerts (issue 25): exporters, scrapes, infra-alerts.yml.

The exporters of deploy/k8s/base/exporters (MySQL, Kafka, kube-state-metrics) and Redis's
sidecar are pinned, locked down and sized, log in as the read-only ``monitor`` users, and are
scraped, as is etcd's metrics listener; kube-state-metrics may list and watch its own
namespace and nothing else. Every metric the alerts of deploy/prometheus/infra-alerts.yml
read comes from a job Prometheus scrapes in the rendering; every alert has a severity
(page or ticket), a runbook, a row in docs/operations.md and promtool unit tests that make
it fire and keep it quiet; kubernetes.yml loads both rule files and sends to the
alertmanager Service. A real etcd,
started with the manifest's metrics flag, serves the metric WebookEtcdNoLeader reads on
that listener.

The network policies for these workloads are held with the others in test_manifests.py.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from devstack.infra import etcd_process, free_port
from tests.deploy.observability_files import PROMETHEUS_DIR, ROOT, metric_names
from tests.deploy.stack import run_promtool
from tests.deploy.test_manifests import (
    OVERLAYS,
    WORKLOAD_KINDS,
    Manifest,
    _dedicated_scrape_jobs,
    _of_kind,
    _pod_template,
    _secret_ref,
    rendered,
)

INFRA_ALERTS = PROMETHEUS_DIR / "infra-alerts.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
INFRA_ALERTS_TEST = PROMETHEUS_DIR / "infra-alerts_test.yml"
SEVERITIES = {"page", "ticket"}
# The exporters' Deployments (exporters/), and Redis's exporter sidecar (infra/redis.yaml).
EXPORTERS = ("mysqld-exporter", "kafka-exporter", "kube-state-metrics")
REDIS_EXPORTER = ("redis", "exporter")
# The only one of them that talks to the Kubernetes API (it needs its token).
API_CLIENTS = {"kube-state-metrics"}
# Which job's targets export the metrics of each family the alerts read.
EXPORTED_BY = {
    "kube_": "kube-state-metrics",
    "mysql_": "mysqld-exporter",
    "redis_": "redis",
    "kafka_": "kafka-exporter",
    "etcd_": "etcd",
}
PINNED = re.compile(r"^[a-z0-9._/-]+:v\d+\.\d+\.\d+$")


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(INFRA_ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _scraped_jobs(objects: list[Manifest]) -> set[str]:
    """The ``job`` labels of the rendering's targets: the app.kubernetes.io/name of every pod
    annotated for the pod-annotation job, and the jobs of their own that select a pod."""
    jobs = set()
    names = set()
    for obj in objects:
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        template = _pod_template(obj)
        name = template["metadata"]["labels"]["app.kubernetes.io/name"]
        names.add(name)
        if template["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true":
            jobs.add(name)
    for job, (workload, _) in _dedicated_scrape_jobs().items():
        if workload in names:
            jobs.add(job)
    return jobs


def _containers(objects: list[Manifest]) -> dict[tuple[str, str], tuple[Manifest, Manifest]]:
    """(workload, container) → (pod spec, container) of the exporters."""
    found = {}
    deployments = _of_kind(objects, "Deployment")
    for name in EXPORTERS:
        pod = _pod_template(deployments[name])["spec"]
        (container,) = pod["containers"]
        found[(name, container["name"])] = (pod, container)
    redis_pod = _pod_template(_of_kind(objects, "StatefulSet")[REDIS_EXPORTER[0]])["spec"]
    (sidecar,) = (c for c in redis_pod["containers"] if c["name"] == REDIS_EXPORTER[1])
    found[REDIS_EXPORTER] = (redis_pod, sidecar)
    return found


def _args(container: Manifest) -> dict[str, str]:
    """``--flag=value`` arguments as flag → value (a bare flag maps to "")."""
    found = {}
    for arg in container.get("args", []):
        flag, _, value = str(arg).partition("=")
        found[flag] = value
    return found


def _env(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env", [])}


# -- the alerts --------------------------------------------------------------------------


def test_the_infra_alert_rules_are_valid_with_a_severity_and_a_runbook() -> None:
    result = run_promtool("check", "rules", str(INFRA_ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = _rules()
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
    assert {"WebookPodRestarting", "WebookContainerOOMKilled", "WebookExporterDown"} <= {
        r["alert"] for r in rules
    }
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["runbook"].strip(), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]


def test_every_infra_alert_fires_and_stays_quiet_in_its_unit_tests() -> None:
    document = yaml.safe_load(INFRA_ALERTS_TEST.read_text())
    assert document["rule_files"] == [INFRA_ALERTS.name]
    cases: dict[str, list[list[Any]]] = {}
    for test in document["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], []).append(case["exp_alerts"] or [])
    for rule in _rules():
        outcomes = cases.get(rule["alert"], [])
        assert any(outcomes), f"{rule['alert']}: no test in which it fires"
        assert any(not o for o in outcomes), f"{rule['alert']}: no test in which it is quiet"
        for alerts in outcomes:
            for alert in alerts:
                assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
    result = run_promtool("test", "rules", str(INFRA_ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_infra_alert_has_a_row_in_the_operations_guide() -> None:
    # docs/operations.md's alert table: "| `Name` (severity) | means | do |".
    rows = dict(re.findall(r"^\| `(\w+)` \((\w+)\)", OPERATIONS.read_text(), re.MULTILINE))
    for rule in _rules():
        assert rows.get(rule["alert"]) == rule["labels"]["severity"], rule["alert"]


def test_the_alerts_read_metrics_of_jobs_prometheus_scrapes(overlay: str) -> None:
    scraped = _scraped_jobs(rendered(overlay))
    for rule in _rules():
        for metric in metric_names(rule["expr"]) - {"up"}:
            (family,) = (prefix for prefix in EXPORTED_BY if metric.startswith(prefix))
            assert EXPORTED_BY[family] in scraped, (rule["alert"], metric)
        for jobs in re.findall(r'job=~?"([^"]+)"', rule["expr"]):
            for job in jobs.split("|"):
                assert job in scraped, (rule["alert"], job)


# -- Prometheus's configuration ------------------------------------------------------------


def test_the_kubernetes_config_loads_both_rule_files_and_alerts_alertmanager(
    tmp_path: Path,
) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "kubernetes.yml").read_text())
    assert config["rule_files"] == ["alerts.yml", INFRA_ALERTS.name]
    targets = [
        target
        for manager in config["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    assert targets
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        services = _of_kind(objects, "Service")
        workload = _of_kind(objects, "StatefulSet")["alertmanager"]
        for target in targets:
            # <pod>.<headless Service>:<port>: a replica of the StatefulSet, by its stable name.
            host, port = target.split(":")
            pod, governing = host.split(".")
            assert governing == workload["spec"]["serviceName"], overlay
            ordinal = int(pod.removeprefix("alertmanager-"))
            assert 0 <= ordinal < workload["spec"]["replicas"], (overlay, target)
            ports = {p["port"] for p in services[governing]["spec"]["ports"]}
            assert int(port) in ports, overlay
    # promtool as in test_prometheus_files.py: Debian's build has no Kubernetes discovery,
    # so each job's discovery is swapped for a static target; both rule files next to it.
    for job in config["scrape_configs"]:
        (discovery,) = job.pop("kubernetes_sd_configs")
        assert discovery == {"role": "pod", "namespaces": {"own_namespace": True}}
        job["static_configs"] = [{"targets": ["10.0.0.1:9100"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    for name in config["rule_files"]:
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    result = run_promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_each_exporter_is_scraped_by_exactly_one_job_on_its_metrics_port(overlay: str) -> None:
    objects = rendered(overlay)
    dedicated = dict(_dedicated_scrape_jobs().values())
    for (name, _), (_, container) in _containers(objects).items():
        workload = next(
            o for o in objects if o["metadata"]["name"] == name and o["kind"] in WORKLOAD_KINDS
        )
        annotations = _pod_template(workload)["metadata"].get("annotations", {})
        annotated = annotations.get("prometheus.io/scrape") == "true"
        # kube-state-metrics's series name other pods: the annotation job would relabel them.
        assert annotated != (name in dedicated), name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if annotated:
            assert int(annotations["prometheus.io/port"]) == ports["metrics"], name
        else:
            assert dedicated[name] == "metrics", name
    # etcd: its metrics listener (--listen-metrics-urls) on the port the etcd job keeps.
    etcd = _of_kind(objects, "StatefulSet")["etcd"]
    (container,) = _pod_template(etcd)["spec"]["containers"]
    listener = _args(container)["--listen-metrics-urls"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert listener == f"http://0.0.0.0:{ports[dedicated['etcd']]}"
    assert "prometheus.io/scrape" not in _pod_template(etcd)["metadata"].get("annotations", {})


# -- the exporters ---------------------------------------------------------------------------


def test_the_exporters_are_pinned_locked_down_and_sized(overlay: str) -> None:
    for (name, container_name), (pod, container) in _containers(rendered(overlay)).items():
        label = (name, container_name)
        assert PINNED.match(container["image"]), (label, container["image"])
        assert pod["securityContext"]["runAsNonRoot"] is True, label
        assert pod["automountServiceAccountToken"] is (name in API_CLIENTS), label
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, label
        assert security["allowPrivilegeEscalation"] is False, label
        assert security["capabilities"]["drop"] == ["ALL"], label
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), label
        assert {"cpu", "memory"} <= resources["limits"].keys(), label
        assert {"readinessProbe", "livenessProbe"} & container.keys(), label


def test_the_exporters_log_in_as_the_read_only_monitor_users(overlay: str) -> None:
    objects = rendered(overlay)
    containers = _containers(objects)
    services = _of_kind(objects, "Service")

    def target_port(address: str) -> str:
        host, port = address.split(":")
        (target,) = (
            p["targetPort"] for p in services[host]["spec"]["ports"] if p["port"] == int(port)
        )
        return str(target)

    # MySQL: user monitor, its password in the environment variable the exporter reads.
    _, mysql = containers[("mysqld-exporter", "mysqld-exporter")]
    args = _args(mysql)
    assert args["--mysqld.username"] == "monitor"
    assert target_port(args["--mysqld.address"]) in {"mysql", "3306"}
    assert _secret_ref(_env(mysql)["MYSQLD_EXPORTER_PASSWORD"]) == {
        "name": "webook-mysql-credentials",
        "key": "monitor-password",
    }
    # Kafka: SCRAM-SHA-512 user monitor on the SASL_SSL listener, the services' one.
    pod, kafka = containers[("kafka-exporter", "kafka-exporter")]
    args = _args(kafka)
    assert target_port(args["--kafka.server"]) == "kafka"
    assert "--sasl.enabled" in args
    assert "--tls.enabled" in args
    assert (args["--sasl.mechanism"], args["--sasl.username"]) == ("scram-sha512", "monitor")
    variable = re.fullmatch(r"\$\((\w+)\)", args["--sasl.password"])
    assert variable, "the password comes from the environment, never written"
    assert _secret_ref(_env(kafka)[variable[1]]) == {
        "name": "webook-kafka-credentials",
        "key": "monitor-password",
    }
    assert "--tls.insecure-skip-tls-verify" not in args
    # The brokers' certificate is checked against the CA of a certificate of its own,
    # mounted read-only as a whole directory (a renewal reaches it).
    ca_file = PurePosixPath(args["--tls.ca-file"])
    assert ca_file.name == "ca.crt"
    mount = {m["mountPath"]: m for m in kafka["volumeMounts"]}[str(ca_file.parent)]
    assert mount["readOnly"] is True
    assert "subPath" not in mount
    secret = {v["name"]: v for v in pod["volumes"]}[mount["name"]]["secret"]
    assert secret["defaultMode"] & 0o077 == 0o040
    certificate = next(
        c["spec"]
        for c in _of_kind(objects, "Certificate").values()
        if c["spec"]["secretName"] == secret["secretName"]
    )
    assert certificate["usages"] == ["client auth", "digital signature"]
    assert certificate["issuerRef"]["name"] == "webook-ca"
    # Redis: the sidecar logs in as monitor (PING, INFO and a few reads: test_manifests.py).
    _, redis = containers[REDIS_EXPORTER]
    env = _env(redis)
    assert env["REDIS_USER"]["value"] == "monitor"
    assert _secret_ref(env["REDIS_PASSWORD"]) == {
        "name": "webook-redis-credentials",
        "key": "monitor-password",
    }


def test_kube_state_metrics_may_only_list_and_watch_its_namespace(overlay: str) -> None:
    objects = rendered(overlay)
    # Nothing cluster-wide: the dev and prod overlays may share a cluster.
    assert not _of_kind(objects, "ClusterRole")
    assert not _of_kind(objects, "ClusterRoleBinding")
    deployment = _of_kind(objects, "Deployment")["kube-state-metrics"]
    pod = _pod_template(deployment)["spec"]
    (container,) = pod["containers"]
    args = _args(container)
    namespace_variable = re.fullmatch(r"\$\((\w+)\)", args["--namespaces"])
    assert namespace_variable
    field = _env(container)[namespace_variable[1]]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.namespace"
    role = _of_kind(objects, "Role")["kube-state-metrics"]
    granted = {
        resource
        for rule in role["rules"]
        for resource in rule["resources"]
        if sorted(rule["verbs"]) == ["list", "watch"]
    }
    assert all(sorted(rule["verbs"]) == ["list", "watch"] for rule in role["rules"])
    assert set(args["--resources"].split(",")) == granted
    # The alerts' series: pods (restarts, terminations) and StatefulSets (replicas).
    assert {"pods", "statefulsets"} <= granted
    binding = _of_kind(objects, "RoleBinding")["kube-state-metrics"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "kube-state-metrics",
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": pod["serviceAccountName"],
            "namespace": deployment["metadata"]["namespace"],
        }
    ]


# -- etcd's metrics, for real -------------------------------------------------------------


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except OSError as exc:
        return 0, str(exc)


def test_a_real_etcd_serves_the_alerts_metric_and_the_probes_on_the_manifests_listener(
    tmp_path: Path,
) -> None:
    # The manifest's --listen-metrics-urls (its port moved to a free one) added to a
    # single-member etcd: /metrics there says whether the member has a leader, the series
    # WebookEtcdNoLeader reads. (The probes' /readyz and /livez on that listener are newer
    # than the etcd of the test environment, 3.5.1: they are not tried here.)
    etcd = _of_kind(rendered("prod"), "StatefulSet")["etcd"]
    (container,) = _pod_template(etcd)["spec"]["containers"]
    listener = _args(container)["--listen-metrics-urls"]
    metrics_port = free_port()
    server = etcd_process(tmp_path / "data", free_port(), free_port(), tmp_path)
    local = re.sub(r"//0\.0\.0\.0:\d+$", f"//127.0.0.1:{metrics_port}", listener)
    assert local != listener
    server.argv.append(f"--listen-metrics-urls={local}")
    server.die_with_parent = True
    server.start(timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            status, body = _get(f"{local}/metrics")
            if status == 200 and re.search(r"^etcd_server_has_leader 1$", body, re.MULTILINE):
                break
            assert time.monotonic() < deadline, f"no leader reported: {status} {body[:300]}"
            time.sleep(0.5)
        rules = {rule["alert"]: rule for rule in _rules()}
        assert "etcd_server_has_leader" in metric_names(rules["WebookEtcdNoLeader"]["expr"])
    finally:
        server.stop()
