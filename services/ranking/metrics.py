"""Metrics of the ranking service (one set per process).

- ``webook_ranking_age_seconds``: age of the ranking this replica serves (wall clock since
  its computation; -1 while it has none) — the alert on a job that stopped running;
- ``webook_ranking_job_duration_seconds{outcome}``: wall time of job runs (``ok``,
  ``stale_token``, ``failed``);
- ``webook_ranking_stale_serves_total``: reads answered with a copy past its expiry because
  Redis could not be read;
- ``webook_ranking_fencing_rejections_total``: runs refused for a stale fencing token.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RANKING_AGE = Gauge(
    "webook_ranking_age_seconds",
    "Seconds since the ranking this replica serves was computed (-1: none).",
)
JOB_DURATION = Histogram(
    "webook_ranking_job_duration_seconds",
    "Wall time of ranking job runs by outcome.",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
# Every outcome exported at 0 from the start (a rate needs the series to exist).
for _outcome in ("ok", "stale_token", "failed"):
    JOB_DURATION.labels(_outcome)
STALE_SERVES = Counter(
    "webook_ranking_stale_serves_total",
    "Ranking reads answered past the copy's expiry because Redis could not be read.",
)
FENCING_REJECTIONS = Counter(
    "webook_ranking_fencing_rejections_total",
    "Ranking job runs refused because a higher fencing token was already accepted.",
)
