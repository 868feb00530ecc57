"""Dashboards and alerts against the running stack and a real Prometheus scraping it.

- Every metric a dashboard panel or an alert rule names is one that some process of the
  stack exports (its ``/metrics`` scraped directly), so no panel watches a misspelt name.
- After traffic through the gateway, every panel's query returns data from Prometheus:
  at least one series with a number (not NaN), so that no dashboard shows an empty panel.
- Prometheus loaded the alert rules, and none of them fires on a healthy stack except the
  instance-count alert's pending state for the follow instance that the traffic killed.
- The Kafka lag exporter reads the stack's consumer groups from the broker, and its log
  names its metrics port where ``devstack.scrape_targets`` looks (job ``lag-exporter``).
"""

from __future__ import annotations

import json
import math
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.lag import NAME as LAG_EXPORTER
from devstack.scrape_targets import ScrapeTarget, targets_from_logs
from devstack.suite import available_services
from tests.deploy.observability_files import (
    SERVICE_DASHBOARDS,
    alert_exprs,
    concrete,
    metric_names,
    panel_queries,
)
from tests.deploy.stack import STACK_GROUPS, ObservedStack

# The whole stack and a Prometheus for about a minute and a half: make chaos, not make test.
pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

# Series Prometheus itself adds to every scrape.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Series of the infrastructure's exporters, which run in the cluster (the redis_exporter
# sidecar of deploy/k8s/base/infra/redis.yaml) and not in the local stack; their names are
# the exporter's documented ones, and promtool tests the alert that uses them.
INFRA_EXPORTED = {"redis_memory_used_bytes", "redis_memory_max_bytes"}
# The window Grafana's $__rate_interval / $__range stand for here: the whole traffic run.
WINDOW = "2m"


def _exported(stack: ObservedStack) -> dict[str, set[str]]:
    """Sample names each job's live processes export right now."""
    names: dict[str, set[str]] = {}
    for target in stack.live_targets():
        with urllib.request.urlopen(target.metrics_url, timeout=5) as answer:
            text = answer.read().decode()
        found = names.setdefault(target.job, set())
        for family in text_string_to_metric_families(text):
            found.update(sample.name for sample in family.samples)
    return names


def _panels_for_running_services() -> list[tuple[str, str]]:
    running = {*available_services(), "gateway"}
    selected = []
    for query in panel_queries():
        service = query.dashboard.removesuffix(".json")
        if service in SERVICE_DASHBOARDS and service not in running:
            continue
        selected.append((query.where, query.expr))
    return selected


def test_every_metric_of_dashboards_and_alerts_is_exported(driven_stack: ObservedStack) -> None:
    # Series recorded by the rules themselves (the slo: ratios): only recording rules have ':'.
    recorded = {name for name, _ in alert_exprs() if ":" in name}
    exported = (
        set().union(*_exported(driven_stack).values()) | SYNTHETIC | INFRA_EXPORTED | recorded
    )
    wanted = {(q.where, name) for q in panel_queries() for name in metric_names(q.expr)}
    wanted |= {
        (f"alert {alert}", name) for alert, expr in alert_exprs() for name in metric_names(expr)
    }
    missing = sorted((where, name) for where, name in wanted if name not in exported)
    assert not missing, f"not exported by any process: {missing}"


def test_every_panel_returns_data(driven_stack: ObservedStack) -> None:
    empty = []
    for where, expr in _panels_for_running_services():
        samples = driven_stack.prometheus.query(concrete(expr, WINDOW))
        values = [float(s["value"][1]) for s in samples]
        if not any(not math.isnan(v) for v in values):
            empty.append((where, concrete(expr, WINDOW), values))
    assert not empty, "panels without data:\n" + "\n".join(map(str, empty))


def test_prometheus_loaded_the_alert_rules(driven_stack: ObservedStack) -> None:
    with urllib.request.urlopen(f"{driven_stack.prometheus.url}/api/v1/rules", timeout=5) as answer:
        groups = json.load(answer)["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert loaded == {alert for alert, _ in alert_exprs()}
    unhealthy = [
        rule["name"] for group in groups for rule in group["rules"] if rule.get("health") != "ok"
    ]
    assert not unhealthy, unhealthy


def test_the_lag_exporter_reads_the_stack_groups_and_is_found_by_its_log(
    driven_stack: ObservedStack,
) -> None:
    (exporter,) = (t for t in driven_stack.targets if t.job == LAG_EXPORTER)
    assert ScrapeTarget(LAG_EXPORTER, exporter.address) in targets_from_logs(driven_stack.log_dir)
    prometheus = driven_stack.prometheus
    read = prometheus.query(
        f'max(webook_kafka_lag_exporter_last_success_timestamp_seconds{{job="{LAG_EXPORTER}"}})'
    )
    (last_read,) = (float(sample["value"][1]) for sample in read)
    assert last_read > 0, "the exporter never read the broker"
    groups = {
        sample["metric"]["group"]
        for sample in prometheus.query(f'webook_kafka_group_lag_sum{{job="{LAG_EXPORTER}"}}')
    }
    # interactive's group by its name, search's indexers by their prefix.
    assert all(any(g.startswith(prefix) for g in groups) for prefix in STACK_GROUPS), groups
