"""Metrics of gray releases, one set per process.

- ``webook_gray_decisions_total{rollout,side}``: decisions taken, by rollout and side
  (``new``: the rolled-out path, ``old``: the path that was there before); the share of
  ``new`` over a few minutes is what a roll-out step should show;
- ``webook_gray_percent{rollout}``: the percent the process applied at its latest decision
  of the rollout (a process that has not taken one yet has no series for it), so a panel
  shows every process on the new step after a change.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DECISIONS = Counter(
    "webook_gray_decisions_total",
    "Gray release decisions, by rollout and side (new: the rolled-out path).",
    ["rollout", "side"],
)
PERCENT = Gauge(
    "webook_gray_percent",
    "Percent of the rollout on the new side, as applied at the latest decision.",
    ["rollout"],
)
