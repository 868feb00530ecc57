"""``deploy/prometheus`` (local and Kubernetes configurations, alert rules) checked by ``promtool``,
and ``deploy/alertmanager`` (where the alerts go) by ``amtool``.

``promtool`` comes from Debian's ``prometheus`` package, ``amtool`` from
``prometheus-alertmanager`` (``make tools`` installs both); these tests fail, not skip,
without them. Every alert of ``alerts.yml`` has a severity the routing knows, a promtool unit
test in which it fires, and a runbook row in docs/operations.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.observability_files import PROMETHEUS_DIR, ROOT, alert_exprs
from tests.deploy.stack import run_promtool

ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_MANIFEST = ROOT / "deploy" / "k8s" / "base" / "alerting" / "alertmanager.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
# The receiver each severity reaches (deploy/alertmanager/alertmanager.yml); critical and
# warning are accepted as page and ticket.
RECEIVER_OF = {
    "page": "page",
    "ticket": "ticket",
    "critical": "page",
    "warning": "ticket",
    "heartbeat": "heartbeat",
}


def _run_amtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("amtool")
    if found is None:
        raise AssertionError("amtool is not installed: apt-get install prometheus-alertmanager")
    return subprocess.run([found, *args], capture_output=True, text=True, check=False, timeout=60)


def _alert_rules(name: str) -> list[dict[str, Any]]:
    """The alerting rules (not the recording ones) of one rule file of deploy/prometheus."""
    path = PROMETHEUS_DIR / name
    groups = (yaml.safe_load(path.read_text()) or {}).get("groups") or []
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_local_config_is_valid(tmp_path: Path) -> None:
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "webook.json").write_text(
        '[{"targets": ["127.0.0.1:8080"], "labels": {"job": "gateway"}}]'
    )
    # A local Alertmanager, as docs/operations.md ("Alert delivery") sets one up.
    (tmp_path / "alertmanagers").mkdir()
    (tmp_path / "alertmanagers" / "local.json").write_text('[{"targets": ["127.0.0.1:9093"]}]')
    result = run_promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_the_kubernetes_config_is_valid(tmp_path: Path) -> None:
    # The file deploy/k8s mounts as /etc/prometheus/prometheus.yml, next to alerts.yml.
    # Debian builds Prometheus without Kubernetes discovery, so promtool checks everything
    # else (globals, rules, relabelling) with the discovery block swapped for a static one.
    config = yaml.safe_load((PROMETHEUS_DIR / "kubernetes.yml").read_text())
    for job in config["scrape_configs"]:
        (discovery,) = job.pop("kubernetes_sd_configs")
        assert discovery == {"role": "pod", "namespaces": {"own_namespace": True}}
        job["static_configs"] = [{"targets": ["10.0.0.1:9100"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    for rules in config["rule_files"]:
        shutil.copy(PROMETHEUS_DIR / rules, tmp_path / rules)
    result = run_promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_sends_alerts_to_every_alertmanager_replica() -> None:
    # In the cluster: each replica of deploy/k8s/base/alerting by its stable name under the
    # StatefulSet's headless Service (the other Service would pick one replica per alert).
    kubernetes = yaml.safe_load((PROMETHEUS_DIR / "kubernetes.yml").read_text())
    (manager,) = kubernetes["alerting"]["alertmanagers"]
    (static,) = manager["static_configs"]
    manifests = [d for d in yaml.safe_load_all(ALERTMANAGER_MANIFEST.read_text()) if d]
    (workload,) = (d for d in manifests if d["kind"] == "StatefulSet")
    services = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "Service"}
    governing = services[workload["spec"]["serviceName"]]["spec"]
    assert governing["clusterIP"] == "None"
    assert governing.get("publishNotReadyAddresses") is True
    replicas = workload["spec"]["replicas"]
    assert replicas >= 2, "a pair, so that one delivers while the other is down"
    port = next(p["port"] for p in governing["ports"] if p["name"] == "http")
    names = [f"alertmanager-{i}.{workload['spec']['serviceName']}" for i in range(replicas)]
    assert static["targets"] == [f"{name}:{port}" for name in names]
    labels = workload["spec"]["template"]["metadata"]["labels"]
    for service in services.values():
        assert service["spec"]["selector"].items() <= labels.items()
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("quay.io/prometheus/alertmanager:v")
    assert f"--web.listen-address=:{port}" in container["args"]
    # Gossip: every replica is a peer, on the cluster port.
    assert "--cluster.listen-address=0.0.0.0:9094" in container["args"]
    assert {a for a in container["args"] if a.startswith("--cluster.peer=")} == {
        f"--cluster.peer={name}:9094" for name in names
    }
    # Locally: whatever alertmanagers/*.json next to prometheus.yml lists.
    local = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (manager,) = local["alerting"]["alertmanagers"]
    assert manager["file_sd_configs"][0]["files"] == ["alertmanagers/*.json"]


def test_the_alertmanager_config_is_valid() -> None:
    result = _run_amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_reaches_the_receiver_of_its_severity() -> None:
    # amtool resolves the routing tree of the real configuration for each alert's labels.
    rules = [
        (name, rule) for name in ("alerts.yml", "infra-alerts.yml") for rule in _alert_rules(name)
    ]
    assert rules
    ours = {
        rule["alert"]: rule["labels"]["severity"]
        for rule in _alert_rules("alerts.yml")
        if rule["labels"]["severity"] not in {"page", "ticket"}
    }
    assert ours == {"WebookWatchdog": "heartbeat"}, "page and ticket, but the watchdog's heartbeat"
    labelled = set()
    for name, rule in rules:
        severity = rule.get("labels", {}).get("severity")
        assert severity in RECEIVER_OF, f"{name}: {rule['alert']} has severity {severity!r}"
        labelled.add((rule["alert"], severity))

    def route(alert: tuple[str, str]) -> tuple[str, str, str]:
        name, severity = alert
        result = _run_amtool(
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"alertname={name}",
            f"severity={severity}",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return name, severity, result.stdout.strip()

    with ThreadPoolExecutor(max_workers=4) as pool:
        routed = list(pool.map(route, sorted(labelled)))
    wrong = [(name, got) for name, severity, got in routed if got != RECEIVER_OF[severity]]
    assert not wrong, wrong


def test_every_alert_fires_in_a_unit_test_and_has_a_runbook() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    runbooks = set(re.findall(r"^\| `(\w+)` \(", OPERATIONS.read_text(), re.MULTILINE))
    names = {rule["alert"] for rule in _alert_rules("alerts.yml")}
    assert not names - fired, f"no unit test where they fire: {sorted(names - fired)}"
    assert not names - runbooks, f"no runbook in docs/operations.md: {sorted(names - runbooks)}"


def test_the_alert_rules_are_valid() -> None:
    result = run_promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(list(alert_exprs()))} rules found" in result.stdout


def test_the_alerts_fire_on_the_series_they_are_for() -> None:
    # deploy/prometheus/alerts_test.yml: promtool's unit tests of the rules.
    result = run_promtool("test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
