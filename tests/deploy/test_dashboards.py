"""The Grafana dashboards and their provisioning, read as Grafana would read them.

Whether their metrics exist and their panels show data is checked against the running stack
in ``test_observability_e2e.py``; here: structure, parseable PromQL, the datasource they
name, one dashboard per service and per subsystem.
"""

from __future__ import annotations

import itertools
from typing import Any

import promql_parser
import pytest
import yaml

from devstack.catalog import SERVICE_NAMES
from tests.deploy.observability_files import (
    DASHBOARD_DIR,
    ROOT,
    SERVICE_DASHBOARDS,
    concrete,
    dashboards,
    metric_names,
    panel_queries,
)

PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
SUBSYSTEM_DASHBOARDS = {
    "overview",
    "gateway",
    "sms-delivery",
    "kafka",
    "caches",
    "ratelimit",
    "balancer",
    "breakers",
    "configuration",
    "migration",
}


def _datasource_uid() -> str:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


def test_there_is_a_dashboard_per_service_and_subsystem() -> None:
    names = {path.stem for path in DASHBOARD_DIR.glob("*.json")}
    assert set(SERVICE_NAMES) == SERVICE_DASHBOARDS
    assert names == SERVICE_DASHBOARDS | SUBSYSTEM_DASHBOARDS


def test_uids_and_titles_are_unique() -> None:
    boards = dashboards().values()
    uids = [b["uid"] for b in boards]
    titles = [b["title"] for b in boards]
    assert len(set(uids)) == len(uids)
    assert len(set(titles)) == len(titles)
    assert all(len(uid) <= 40 for uid in uids), "Grafana refuses uids over 40 characters"


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_panels_query_the_provisioned_prometheus(name: str) -> None:
    uid = _datasource_uid()
    board = dashboards()[name]
    panels: list[dict[str, Any]] = board["panels"]
    assert panels
    for panel in panels:
        assert panel["title"]
        assert panel.get("description"), f"{panel['title']}: say what the panel shows"
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == uid
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids)


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_panels_do_not_overlap(name: str) -> None:
    boxes = [p["gridPos"] for p in dashboards()[name]["panels"]]
    for a, b in itertools.combinations(boxes, 2):
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, (a, b)
    assert all(box["x"] + box["w"] <= 24 for box in boxes)


def test_every_query_is_valid_promql_on_webook_metrics() -> None:
    for query in panel_queries():
        promql_parser.parse(concrete(query.expr))
        names = metric_names(query.expr)
        assert names, f"{query.where}: selects no metric"
        for name in names:
            assert name.startswith(("webook_", "process_")) or name == "up", (query.where, name)


def test_service_dashboards_select_their_own_job() -> None:
    for query in panel_queries():
        service = query.dashboard.removesuffix(".json")
        if service in SERVICE_DASHBOARDS:
            assert f'job="{service}"' in query.expr, query.where


def test_dashboard_provisioning_reads_the_dashboard_directory() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "webook.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "${DASHBOARDS_DIR}"
