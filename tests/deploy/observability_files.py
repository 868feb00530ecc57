"""Reading the dashboards and alert rules under ``deploy/``: their panels, queries and metrics.

Grafana queries contain Grafana's own variables (``$__rate_interval``, ``$__range``); they are
replaced by a concrete range before a query is parsed or sent to a real Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "deploy" / "grafana" / "dashboards"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
# Dashboards of one service each (file name without .json): only meaningful where it runs.
SERVICE_DASHBOARDS = frozenset(
    {
        "user",
        "sms",
        "article",
        "interactive",
        "comment",
        "follow",
        "search",
        "ranking",
        "scheduler",
        "payment",
        "reward",
        "account",
        "feed",
        "tag",
    }
)
GRAFANA_VARIABLE = re.compile(r"\$(__rate_interval|__range|__interval)\b|\$\{(__\w+)\}")


@dataclass(frozen=True)
class PanelQuery:
    """One query of one dashboard panel."""

    dashboard: str
    panel: str
    expr: str

    @property
    def where(self) -> str:
        """``dashboard / panel`` for messages."""
        return f"{self.dashboard} / {self.panel}"


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON, by file name."""
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def panel_queries() -> Iterator[PanelQuery]:
    """Every query of every panel of every dashboard (rows' nested panels included)."""
    for name, dashboard in dashboards().items():
        stack = list(dashboard.get("panels", []))
        while stack:
            panel = stack.pop(0)
            stack.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                yield PanelQuery(name, str(panel["title"]), str(target["expr"]))


def alert_exprs() -> Iterator[tuple[str, str]]:
    """``(alert name, expression)`` of every rule in ``deploy/prometheus/alerts.yml``."""
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield str(rule.get("alert") or rule.get("record")), str(rule["expr"])


def concrete(expr: str, window: str = "1m") -> str:
    """``expr`` with Grafana's interval variables replaced by ``window``."""
    return GRAFANA_VARIABLE.sub(window, expr)


def metric_names(expr: str) -> set[str]:
    """Names of the metrics a PromQL expression selects (parsed, not pattern-matched)."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:
                names.update(m.value for m in node.matchers.matchers if m.name == "__name__")

    promql_parser.walk(promql_parser.parse(concrete(expr)), visit)
    return names
