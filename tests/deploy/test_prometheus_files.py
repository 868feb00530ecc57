"""``deploy/prometheus`` (local and Kubernetes configurations, alert rules) checked by ``promtool``.

``promtool`` comes from Debian's ``prometheus`` package (``.ci/run`` installs it); these tests
fail, not skip, without it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.deploy.observability_files import PROMETHEUS_DIR, alert_exprs
from tests.deploy.stack import run_promtool


def test_the_local_config_is_valid(tmp_path: Path) -> None:
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "webook.json").write_text(
        '[{"targets": ["127.0.0.1:8080"], "labels": {"job": "gateway"}}]'
    )
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
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    result = run_promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_are_valid() -> None:
    result = run_promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(list(alert_exprs()))} rules found" in result.stdout


def test_the_alerts_fire_on_the_series_they_are_for() -> None:
    # deploy/prometheus/alerts_test.yml: promtool's unit tests of the rules.
    result = run_promtool("test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
